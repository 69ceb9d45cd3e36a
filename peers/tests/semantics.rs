//! What `--mode polling` relies on and pays for, asserted against the
//! kernel through the polling crate: a registration made with `add` is
//! oneshot, so it reports once and then stays silent, data still unread,
//! until `modify` re-arms it; and a re-arm reports at once a readiness that
//! is already there, so serving one read per event loses nothing.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use polling::{Event, Events, Poller};

const KEY: usize = 7;

fn wait(poller: &Poller, events: &mut Events, timeout: Duration) -> Vec<Event> {
    events.clear();
    poller.wait(events, Some(timeout)).expect("Poller::wait");
    events.iter().collect()
}

#[test]
fn oneshot_reports_once_until_modify_rearms_it() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    server.set_nonblocking(true).expect("O_NONBLOCK");
    let poller = Poller::new().expect("Poller::new");
    // SAFETY: `server` is deleted from the poller below, before it is dropped.
    unsafe { poller.add(&server, Event::readable(KEY)) }.expect("Poller::add");
    let mut events = Events::new();
    client.write_all(b"unread").expect("write");

    let first = wait(&poller, &mut events, Duration::from_secs(2));
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].key == KEY && first[0].readable);

    // Nobody read the bytes: level-triggered epoll would report them again.
    let silent = wait(&poller, &mut events, Duration::from_millis(100));
    assert!(silent.is_empty(), "oneshot fired twice: {silent:?}");

    poller
        .modify(&server, Event::readable(KEY))
        .expect("Poller::modify");
    let again = wait(&poller, &mut events, Duration::from_secs(2));
    assert_eq!(again.len(), 1, "the re-arm must report the unread bytes");
    assert!(again[0].key == KEY && again[0].readable);

    poller.delete(&server).expect("Poller::delete");
}

#[test]
fn workers_with_polling_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_peers"))
        .args(["--mode", "polling", "--workers", "2"])
        .output()
        .expect("run peers");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing may be announced: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--workers applies to --mode tokio only"),
        "{stderr}"
    );
}
