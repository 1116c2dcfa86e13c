//! The connection's task: the only place with I/O. It turns socket reads, user commands,
//! finished authorizations and the timer into [`Input`]s for the [`Machine`], and carries
//! out its [`Output`]s in order. It makes no protocol decision of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warren_protocol::ServerMessage;

use super::command::Command;
use super::dispatch::Handlers;
use super::machine::{Input, Machine, Output, Settings};
use super::{ConnectionState, WsConfig, WsError};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Opening = Pin<Box<dyn Future<Output = Result<Socket, String>> + Send>>;
type PendingAuth = Pin<Box<dyn Future<Output = Input> + Send>>;

/// How long a close waits for the other side's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

pub(crate) struct Driver {
    config: WsConfig,
    url: String,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Every handle is gone (the command channel closed).
    abandoned: bool,
    machine: Machine,
    handlers: Handlers,
    socket: Option<Socket>,
    opening: Option<Opening>,
    /// Authorizations for the current connection.
    auths: FuturesUnordered<PendingAuth>,
    timer: Pin<Box<Sleep>>,
    /// The deadline `timer` is set to, while it has not fired.
    armed: Option<Instant>,
}

impl Driver {
    pub(crate) fn new(
        config: WsConfig,
        url: String,
        commands: mpsc::UnboundedReceiver<Command>,
        state: watch::Sender<ConnectionState>,
        connected_once: Arc<AtomicBool>,
    ) -> Self {
        let machine = Machine::new(
            Settings::from(&config),
            state,
            connected_once,
            now().into_std(),
        );
        Self {
            config,
            url,
            commands,
            abandoned: false,
            machine,
            handlers: Handlers::default(),
            socket: None,
            opening: None,
            auths: FuturesUnordered::new(),
            timer: Box::pin(sleep_until(Instant::now())),
            armed: None,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            while let Some(output) = self.machine.next_output() {
                if self.carry_out(output).await.is_break() {
                    return;
                }
            }
            self.arm_timer();
            if let Some(input) = self.next_input().await {
                self.machine.handle(now().into_std(), input);
            }
        }
    }

    /// Keeps the timer no later than the machine's deadline. A deadline that moved later
    /// (the line was busy) leaves the timer alone: it fires early, the machine finds
    /// nothing due, and the timer is set again.
    fn arm_timer(&mut self) {
        let Some(deadline) = self.machine.deadline().map(Instant::from_std) else {
            self.armed = None;
            return;
        };
        let sooner = match self.armed {
            Some(armed) => deadline < armed,
            None => true,
        };
        if sooner {
            self.timer.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
    }

    async fn next_input(&mut self) -> Option<Input> {
        tokio::select! {
            result = or_pending(self.opening.as_mut()), if self.opening.is_some() => {
                self.opening = None;
                match result {
                    Ok(ws) => {
                        self.socket = Some(ws);
                        Some(Input::Opened)
                    }
                    Err(e) => Some(Input::ConnectFailed(e)),
                }
            }
            msg = or_pending(self.socket.as_mut().map(StreamExt::next)), if self.socket.is_some() => {
                Some(self.frame(msg).await)
            }
            cmd = self.commands.recv(), if !self.abandoned => match cmd {
                Some(Command::Request(r)) => Some(Input::Request(r)),
                Some(Command::Handlers(change)) => {
                    self.handlers.change(change);
                    None
                }
                None => {
                    self.abandoned = true;
                    Some(Input::Abandoned)
                }
            },
            Some(input) = self.auths.next(), if !self.auths.is_empty() => Some(input),
            () = &mut self.timer, if self.armed.is_some() => {
                self.armed = None;
                Some(Input::Tick)
            }
        }
    }

    /// What a read from the socket means.
    async fn frame(&mut self, msg: Option<Result<Message, tungstenite::Error>>) -> Input {
        match msg {
            Some(Ok(Message::Text(text))) => match ServerMessage::parse(text.as_str()) {
                Ok(m) => Input::Received(m),
                Err(e) => Input::Undecodable(e, text.as_str().chars().take(120).collect()),
            },
            Some(Ok(Message::Close(frame))) => {
                // Our answering close frame is queued; let it go out.
                if let Some(mut ws) = self.socket.take() {
                    let _ = tokio::time::timeout(CLOSE_WAIT, ws.close(None)).await;
                }
                match frame {
                    Some(f) => Input::CloseFrame {
                        code: Some(u16::from(f.code)),
                        reason: f.reason.as_str().to_owned(),
                    },
                    None => Input::CloseFrame {
                        code: None,
                        reason: String::new(),
                    },
                }
            }
            Some(Ok(_)) => Input::OtherFrame,
            Some(Err(e)) => {
                self.socket = None;
                Input::Lost(e.to_string())
            }
            None => {
                self.socket = None;
                Input::Lost("connection closed".into())
            }
        }
    }

    async fn carry_out(&mut self, output: Output) -> std::ops::ControlFlow<()> {
        match output {
            Output::Connect => {
                self.drop_connection();
                self.opening = Some(Box::pin(open(self.url.clone(), &self.config)));
            }
            Output::Send { text, written } => {
                let result = match &mut self.socket {
                    Some(ws) => ws
                        .send(Message::text(text))
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err("not connected".into()),
                };
                if let Some(reply) = written {
                    let _ = reply.send(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(|_| WsError::NotConnected),
                    );
                }
                if let (Err(e), Some(_)) = (result, &self.socket) {
                    self.drop_connection();
                    self.machine.handle(now().into_std(), Input::Lost(e));
                }
            }
            Output::Close => {
                self.opening = None;
                if let Some(mut ws) = self.socket.take() {
                    close_socket(&mut ws).await;
                }
            }
            Output::Disconnect => self.drop_connection(),
            Output::Authorize(request) => {
                let socket_id = request.socket_id.clone();
                let channel = request.channel_name.clone();
                let authorizer = self.config.channel_authorizer.clone();
                self.auths.push(Box::pin(async move {
                    let result = match authorizer {
                        Some(a) => a.authorize(request).await,
                        None => Err("no channel authorizer is configured".into()),
                    };
                    Input::ChannelAuthorized {
                        socket_id,
                        channel,
                        result,
                    }
                }));
            }
            Output::Authenticate { socket_id } => {
                let authenticator = self.config.user_authenticator.clone();
                self.auths.push(Box::pin(async move {
                    let result = match authenticator {
                        Some(a) => a.authenticate(socket_id.clone()).await,
                        None => Err("no user authenticator is configured".into()),
                    };
                    Input::UserAuthenticated { socket_id, result }
                }));
            }
            Output::Emit(emit) => self.handlers.emit(emit),
            Output::Error(error) => self.handlers.error(&error),
            Output::Stop { notify } => {
                self.drop_connection();
                if let Some(reply) = notify {
                    let _ = reply.send(());
                }
                return std::ops::ControlFlow::Break(());
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    /// Forgets the connection and everything tied to it.
    fn drop_connection(&mut self) {
        self.socket = None;
        self.opening = None;
        self.auths = FuturesUnordered::new();
    }
}

fn now() -> Instant {
    Instant::now()
}

/// `future`'s output, or never when there is none (its `select!` branch is disabled then).
async fn or_pending<F: Future>(future: Option<F>) -> F::Output {
    match future {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The TCP connection and the WebSocket handshake.
fn open(url: String, config: &WsConfig) -> impl Future<Output = Result<Socket, String>> + Send {
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(config.max_message_size))
        .max_frame_size(Some(config.max_message_size))
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    async move {
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config), true)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string())
    }
}

/// A clean close: our close frame, then the server's answer (briefly).
async fn close_socket(ws: &mut Socket) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}
