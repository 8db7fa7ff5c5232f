//! A local Lambda Runtime API, to drive a function's real binary the way
//! Lambda (or `cargo lambda watch`) does: the first `GET .../invocation/next`
//! gets the event, the function's answer (`/response`, `/error`) or its init
//! error (`/init/error`) is captured, then the process is stopped.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Response,
    Error,
    InitError,
}

#[derive(Debug)]
pub struct RuntimeAnswer {
    pub kind: AnswerKind,
    pub body: String,
}

/// Runs `binary` with `env` (and nothing else of this process's environment
/// but PATH) against a local Runtime API handing it `event`; `None` if it
/// answered nothing within `timeout`.
pub fn invoke_binary(
    binary: &str,
    env: &[(&str, &str)],
    event: &str,
    timeout: Duration,
) -> Option<RuntimeAnswer> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the Runtime API");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let event = event.to_string();
    std::thread::spawn(move || {
        let mut handed = false;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string();
            if path.ends_with("/invocation/next") {
                if handed {
                    // No second invocation: leave the runtime waiting.
                    std::thread::sleep(Duration::from_secs(3600));
                    continue;
                }
                handed = true;
                let deadline = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis()
                    + 60_000;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     lambda-runtime-aws-request-id: req-1\r\n\
                     lambda-runtime-deadline-ms: {deadline}\r\n\
                     lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:test\r\n\
                     lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                     content-length: {}\r\n\r\n",
                    event.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(event.as_bytes());
                continue;
            }
            let kind = if path.ends_with("/init/error") {
                AnswerKind::InitError
            } else if path.ends_with("/response") {
                AnswerKind::Response
            } else {
                AnswerKind::Error
            };
            let _ = stream.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
            let _ = tx.send(RuntimeAnswer {
                kind,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    });
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "test")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the function binary");
    let answer = rx.recv_timeout(timeout).ok();
    let _ = child.kill();
    let _ = child.wait();
    answer
}
