//! The deployed tests' HTTP backend: every request gets one line naming the
//! pod and node that answered and the client address the pod saw, so a test
//! checks which node carried a request and whether the source survived.
//! `POD_NAME` and `NODE_NAME` come from the downward API.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn answer(mut stream: TcpStream, pod: &str, node: &str) {
    let mut request = [0u8; 4096];
    // One read is a whole request line and headers from curl; nothing in
    // the body matters.
    let _ = stream.read(&mut request);
    let peer = stream
        .peer_addr()
        .map(|a| a.ip().to_canonical().to_string())
        .unwrap_or_default();
    let body = format!("pod={pod} node={node} client={peer}\n");
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn main() {
    let pod = std::env::var("POD_NAME").unwrap_or_else(|_| "unknown".into());
    let node = std::env::var("NODE_NAME").unwrap_or_else(|_| "unknown".into());
    let address = std::env::var("LISTEN").unwrap_or_else(|_| "[::]:8080".into());
    let listener = TcpListener::bind(&address).unwrap_or_else(|e| {
        eprintln!("flb-backend: cannot listen on {address}: {e}");
        std::process::exit(1)
    });
    eprintln!("flb-backend: {pod} on {node} listening on {address}");
    for stream in listener.incoming().flatten() {
        let (pod, node) = (pod.clone(), node.clone());
        std::thread::spawn(move || answer(stream, &pod, &node));
    }
}
