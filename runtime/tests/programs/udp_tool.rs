//! A tiny UDP server and client for the network tests (busybox has no UDP `nc`).
//! Built by the test itself as a static binary and copied into the test image.
//!
//! `udp_tool serve PORT`: answers each datagram with `udp-ok:<datagram>`.
//! `udp_tool send IP PORT MESSAGE`: sends MESSAGE, prints the answer; exit 1 on timeout.

use std::net::UdpSocket;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("serve") => serve(args.get(2)),
        Some("send") => send(args.get(2), args.get(3), args.get(4)),
        _ => {
            eprintln!("usage: udp_tool serve PORT | send IP PORT MESSAGE");
            2
        }
    };
    std::process::exit(code);
}

fn serve(port: Option<&String>) -> i32 {
    let Some(port) = port else { return 2 };
    let Ok(socket) = UdpSocket::bind(format!("0.0.0.0:{port}")) else {
        eprintln!("udp_tool: cannot bind port {port}");
        return 1;
    };
    let mut buffer = [0u8; 1500];
    loop {
        if let Ok((n, peer)) = socket.recv_from(&mut buffer) {
            let text = String::from_utf8_lossy(buffer.get(..n).unwrap_or_default()).into_owned();
            println!("received {text:?} from {}", peer.ip());
            let _ = socket.send_to(format!("udp-ok:{text}").as_bytes(), peer);
        }
    }
}

fn send(ip: Option<&String>, port: Option<&String>, message: Option<&String>) -> i32 {
    let (Some(ip), Some(port), Some(message)) = (ip, port, message) else {
        return 2;
    };
    let Ok(socket) = UdpSocket::bind("0.0.0.0:0") else { return 1 };
    let _ = socket.set_read_timeout(Some(Duration::from_secs(2)));
    if socket.send_to(message.as_bytes(), format!("{ip}:{port}")).is_err() {
        return 1;
    }
    let mut buffer = [0u8; 1500];
    match socket.recv(&mut buffer) {
        Ok(n) => {
            println!("{}", String::from_utf8_lossy(buffer.get(..n).unwrap_or_default()));
            0
        }
        Err(_) => 1,
    }
}
