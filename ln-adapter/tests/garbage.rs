//! Garbage on the Lightning port is dropped; the node keeps working.

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_port_is_dropped() {
    let p = pair().await;
    let addr = p.b.listen_addr();
    tokio::task::spawn_blocking(move || {
        for junk in [
            vec![0u8; 50],
            vec![0xffu8; 5000],
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        ] {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = s.write_all(&junk);
            // The node hangs up (or answers nothing useful); it must not crash.
            let _ = s.read(&mut [0u8; 64]);
        }
    })
    .await
    .unwrap();
    open_channel(&p, 300_000).await;
    hold_pay_and_claim(&p.a, &p.b, 1_000_000).await;
}
