//! Process limits (the server and the bench both raise their open-files limit) and a
//! process's resource usage from /proc (for the bench's server figures).

/// Raises the soft open-files limit to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    Ok(lim.rlim_cur)
}

/// Lets many sockets bound to one source address share ports until `connect` picks the
/// 4-tuple (Linux `IP_BIND_ADDRESS_NO_PORT`); without it each bind reserves a port.
#[cfg(target_os = "linux")]
pub fn bind_address_no_port(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsRawFd;
    const IP_BIND_ADDRESS_NO_PORT: libc::c_int = 24;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn bind_address_no_port(_socket: &tokio::net::TcpSocket) {}

/// A figure summed over processes; `None` when there are none or one cannot be read.
pub fn total(pids: &[u32], figure: fn(u32) -> Option<u64>) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| figure(pid)).sum()
}

/// Resident set size of a process in bytes (VmRSS of /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User + system CPU time of a process in nanoseconds (/proc/PID/stat).
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    parse_cpu_ticks(&stat).map(|t| t * 1_000_000_000 / ticks)
}

/// User + system CPU time, in nanoseconds, of a process's threads whose name starts with
/// `prefix` (/proc/PID/task/*/stat); 0 when none has such a name.
pub fn threads_cpu_ns(pid: u32, prefix: &str) -> Option<u64> {
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
    let mut sum = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(stat) = std::fs::read_to_string(task.ok()?.path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        if thread_name(&stat).is_some_and(|name| name.starts_with(prefix)) {
            sum += parse_cpu_ticks(&stat)?;
        }
    }
    Some(sum * 1_000_000_000 / ticks)
}

/// CPU of the server's webhook threads (named `warren-webhooks` by the server).
pub fn webhook_threads_cpu_ns(pid: u32) -> Option<u64> {
    threads_cpu_ns(pid, "warren-webhooks")
}

/// Field 2 of a stat line: the name, between the first '(' and the last ')'.
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        assert_eq!(
            parse_vm_rss("Name:\twarren\nVmPeak:\t 100 kB\nVmRSS:\t   2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let stat = "1234 (war ren) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(200));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(thread_name(stat), Some("war ren"));
        let me = std::process::id();
        assert!(threads_cpu_ns(me, "").is_some());
        assert_eq!(threads_cpu_ns(me, "no thread is called this"), Some(0));
        assert!(rss_bytes(me).is_some_and(|r| r > 0));
        assert!(cpu_ns(me).is_some());
        assert_eq!(total(&[], cpu_ns), None);
        assert_eq!(total(&[me, u32::MAX], rss_bytes), None);
        assert!(total(&[me, me], cpu_ns).is_some());
        assert!(raise_nofile_limit().is_ok_and(|n| n > 0));
    }
}
