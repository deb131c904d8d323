//! A tiny TCP tool the tests run inside network namespaces:
//! `flb-probe listen ADDR:PORT TEXT` answers every connection with TEXT;
//! `flb-probe connect ADDR:PORT` prints what the server sent (5 s timeout).

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
        _ => Err("usage: flb-probe listen ADDR:PORT TEXT | connect ADDR:PORT".into()),
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
