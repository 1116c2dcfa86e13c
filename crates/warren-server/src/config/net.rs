//! Address ranges in the configuration (`server.trusted_proxies`).

use std::net::IpAddr;

use figment::value::Value;
use ipnet::IpNet;
use serde::{de, Deserialize, Deserializer};

/// Address ranges: CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.1`, taken as `/32` or
/// `/128`), written as an array or as one comma-separated string (handy in a variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

impl Networks {
    fn parse(items: &[String]) -> Result<Self, String> {
        items
            .iter()
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{item:?} is neither an address nor a CIDR range"))
            })
            .collect::<Result<_, _>>()
            .map(Networks)
    }
}

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items: Option<Vec<String>> = match <Value as Deserialize>::deserialize(deserializer)? {
            Value::String(_, text) => Some(text.split(',').map(|s| s.trim().to_owned()).collect()),
            Value::Array(_, items) => items
                .iter()
                .map(|item| item.as_str().map(Into::into))
                .collect(),
            _ => None,
        };
        let items = items.ok_or_else(|| de::Error::custom("expected an array of CIDR ranges"))?;
        Networks::parse(&items).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_ranges_are_read_and_junk_is_named() {
        let nets = Networks::parse(&["10.0.0.0/8".into(), "192.0.2.1".into(), "::1".into()])
            .expect("valid");
        assert_eq!(nets.0.len(), 3);
        assert!(nets.0[1].contains(&"192.0.2.1".parse::<IpAddr>().expect("ip")));
        assert!(!nets.0[1].contains(&"192.0.2.2".parse::<IpAddr>().expect("ip")));
        let err = Networks::parse(&["10.0.0.0/99".into()]).expect_err("refused");
        assert!(err.contains("10.0.0.0/99"), "{err}");
    }
}
