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
//! `<ms since start> fail <error>` per request (500 ms timeout each);
//! `flb-probe flood IFACE FILE RATE SECONDS` sends the raw Ethernet frames
//! listed in FILE (one per line: `LABEL HEX`), in turn, out of IFACE at RATE
//! frames per second for SECONDS, then prints `sent LABEL COUNT` per label
//! and `rate FRAMES SECONDS FRAMES_PER_SECOND` as measured.

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
        ["flood", iface, file, rate, seconds] => {
            let number = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
            number(rate).and_then(|rate| {
                let seconds = number(seconds)?;
                flood(iface, file, rate, Duration::from_secs(seconds))
            })
        }
        _ => Err(
            "usage: flb-probe listen ADDR:PORT TEXT | connect ADDR:PORT | udp ADDR:PORT HEX | watch ADDR:PORT MS | http-loop ADDR:PORT EVERY_MS | flood IFACE FILE RATE SECONDS"
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

fn from_hex(hex: &str) -> Result<Vec<u8>, String> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("x"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| format!("not hex: {e}"))
}

fn udp(addr: SocketAddr, hex: &str) -> Result<(), String> {
    let bytes = from_hex(hex)?;
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

/// Sends the frames of `file` in turn out of `iface`, `rate` a second, for
/// `length`. Frames go out in small batches on a 1 ms grid, so the rate
/// holds however long one send takes; a send the kernel refuses is an error
/// (the test's count of what was sent must be exact).
fn flood(iface: &str, file: &str, rate: u64, length: Duration) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let mut frames: Vec<(String, Vec<u8>)> = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (label, hex) = line
            .split_once(' ')
            .ok_or_else(|| format!("{file}: no LABEL HEX in {line:?}"))?;
        frames.push((label.to_owned(), from_hex(hex.trim())?));
    }
    if frames.is_empty() {
        return Err(format!("{file}: no frames"));
    }
    let socket = RawSocket::open(iface).map_err(|e| format!("packet socket on {iface}: {e}"))?;
    let mut sent: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut total: u64 = 0;
    let goal = u64::try_from(length.as_micros() * u128::from(rate) / 1_000_000)
        .map_err(|e| format!("too many frames: {e}"))?;
    let start = Instant::now();
    while total < goal {
        let elapsed = start.elapsed();
        let due = u64::try_from(elapsed.as_micros() * u128::from(rate) / 1_000_000)
            .unwrap_or(u64::MAX)
            .min(goal);
        while total < due {
            let (label, frame) = &frames[usize::try_from(total).unwrap_or(0) % frames.len()];
            socket
                .send(frame)
                .map_err(|e| format!("send {label} ({} bytes): {e}", frame.len()))?;
            *sent.entry(label.as_str()).or_default() += 1;
            total += 1;
        }
        if total < goal {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    for (label, count) in &sent {
        let _ = writeln!(out, "sent {label} {count}");
    }
    #[allow(clippy::cast_precision_loss)] // a rate to print
    let per_second = total as f64 / seconds;
    let _ = writeln!(out, "rate {total} {seconds:.3} {per_second:.0}");
    Ok(())
}

/// An AF_PACKET socket that sends whole Ethernet frames out of one
/// interface; closed on drop.
struct RawSocket {
    fd: std::os::fd::OwnedFd,
}

impl RawSocket {
    #[allow(unsafe_code)]
    fn open(iface: &str) -> std::io::Result<RawSocket> {
        use std::os::fd::FromRawFd;
        let name = std::ffi::CString::new(iface).map_err(std::io::Error::other)?;
        // SAFETY: `name` is a live NUL-terminated string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Protocol 0: this socket receives nothing, it only sends.
        // SAFETY: plain system call with constant arguments.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by no one
        // else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let addr = libc::sockaddr_ll {
            sll_family: libc::AF_PACKET as libc::c_ushort,
            sll_protocol: 0,
            sll_ifindex: libc::c_int::try_from(index).map_err(std::io::Error::other)?,
            sll_hatype: 0,
            sll_pkttype: 0,
            sll_halen: 0,
            sll_addr: [0; 8],
        };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_ll>())
            .map_err(std::io::Error::other)?;
        // SAFETY: the fd is open; `addr` is a live sockaddr_ll and `len` its
        // size.
        let rc = unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                (&raw const addr).cast(),
                len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(RawSocket { fd })
    }

    #[allow(unsafe_code)]
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        // SAFETY: the fd is open; `frame` is valid for reads of its length.
        let n = unsafe {
            libc::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.fd),
                frame.as_ptr().cast(),
                frame.len(),
                0,
            )
        };
        match usize::try_from(n) {
            Ok(n) if n == frame.len() => Ok(()),
            Ok(n) => Err(std::io::Error::other(format!("only {n} bytes sent"))),
            Err(_) => Err(std::io::Error::last_os_error()),
        }
    }
}
