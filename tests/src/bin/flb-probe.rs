//! A tiny TCP tool the tests run inside network namespaces:
//! `flb-probe listen ADDR:PORT TEXT` answers every connection with TEXT;
//! `flb-probe connect ADDR:PORT` prints what the server sent (5 s timeout);
//! `flb-probe http-loop ADDR:PORT EVERY_MS` sends `GET /` every EVERY_MS until
//! killed, printing `<ms since start> ok <first body line>` or
//! `<ms since start> fail <error>` per request (500 ms timeout each).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen", addr, text] => parsed(addr).and_then(|a| listen(a, text)),
        ["connect", addr] => parsed(addr).and_then(connect),
        ["http-loop", addr, every] => parsed(addr).and_then(|a| {
            let every = every.parse().map_err(|e| format!("{every}: {e}"))?;
            http_loop(a, Duration::from_millis(every))
        }),
        _ => Err(
            "usage: flb-probe listen ADDR:PORT TEXT | connect ADDR:PORT | http-loop ADDR:PORT EVERY_MS"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flb-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn listen(addr: SocketAddr, text: &str) -> Result<(), String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.write_all(text.as_bytes());
    }
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    print!("{text}");
    Ok(())
}

fn http_loop(addr: SocketAddr, every: Duration) -> Result<(), String> {
    let start = std::time::Instant::now();
    let timeout = Duration::from_millis(500);
    loop {
        let at = start.elapsed().as_millis();
        let result = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            stream.write_all(b"GET / HTTP/1.1\r\nHost: ferrolb\r\nConnection: close\r\n\r\n")?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
            match body.lines().next() {
                Some(line) if text.starts_with("HTTP/1.1 200") => Ok(line.to_owned()),
                _ => Err(std::io::Error::other("no 200 answer")),
            }
        })();
        let line = match result {
            Ok(body) => format!("{at} ok {body}"),
            Err(e) => format!("{at} fail {e}"),
        };
        if writeln!(std::io::stdout(), "{line}").is_err() {
            return Ok(()); // the reader went away
        }
        std::thread::sleep(every);
    }
}
