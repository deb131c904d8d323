//! A tiny network tool the tests run inside network namespaces:
//! `flb-probe listen ADDR:PORT TEXT` answers every connection with TEXT;
//! `flb-probe connect ADDR:PORT` prints what the server sent (5 s timeout);
//! `flb-probe udp ADDR:PORT HEX` sends one datagram of the hex-coded bytes;
//! `flb-probe watch ADDR:PORT MS` starts a TCP connection attempt every MS
//! milliseconds (each with a 300 ms budget, below the first SYN
//! retransmission) and prints `START_MS ok|fail TEXT` per attempt, START_MS
//! counted from the Unix epoch, until killed;
//! `flb-probe http-loop ADDR:PORT EVERY_MS` sends `GET /` every EVERY_MS until
//! killed, printing `<ms since start> ok <first body line>` or
//! `<ms since start> fail <error>` per request (500 ms timeout each).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen", addr, text] => parsed(addr).and_then(|a| listen(a, text)),
        ["connect", addr] => parsed(addr).and_then(connect),
        ["udp", addr, hex] => parsed(addr).and_then(|a| udp(a, hex)),
        ["watch", addr, ms] => parsed(addr).and_then(|a| {
            let ms: u64 = ms.parse().map_err(|e| format!("{ms}: {e}"))?;
            watch(a, Duration::from_millis(ms))
        }),
        ["http-loop", addr, every] => parsed(addr).and_then(|a| {
            let every = every.parse().map_err(|e| format!("{every}: {e}"))?;
            http_loop(a, Duration::from_millis(every))
        }),
        _ => Err(
            "usage: flb-probe listen ADDR:PORT TEXT | connect ADDR:PORT | udp ADDR:PORT HEX | watch ADDR:PORT MS | http-loop ADDR:PORT EVERY_MS"
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

fn udp(addr: SocketAddr, hex: &str) -> Result<(), String> {
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("x"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| format!("not hex: {e}"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(local).map_err(|e| format!("bind: {e}"))?;
    socket
        .send_to(&bytes, addr)
        .map_err(|e| format!("send to {addr}: {e}"))?;
    Ok(())
}

fn watch(addr: SocketAddr, every: Duration) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        for line in rx {
            let mut out = stdout.lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    });
    let mut next = Instant::now();
    loop {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let tx = tx.clone();
        std::thread::spawn(move || {
            let budget = Duration::from_millis(300);
            let line = match TcpStream::connect_timeout(&addr, budget).and_then(|mut s| {
                s.set_read_timeout(Some(budget))?;
                let mut text = String::new();
                s.read_to_string(&mut text)?;
                Ok(text)
            }) {
                Ok(text) => format!("{started} ok {text}"),
                Err(e) => format!("{started} fail {e}"),
            };
            let _ = tx.send(line);
        });
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
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
