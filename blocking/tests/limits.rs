//! `--max-conns` holds across threads and across processes (the counters
//! live in a MAP_SHARED mapping); a full descriptor table neither kills
//! nor spins the server.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn max_conns_holds_across_threads_and_processes() {
    // prefork: 4 processes, each of which would gladly accept a client; the
    // shared count admits 2 in all.
    for mode in ["thread", "pool", "fork", "prefork"] {
        let mut server = Server::start(&["--mode", mode, "--workers", "4", "--max-conns", "2"]);
        let mut first = connect(server.addr);
        let mut second = connect(server.addr);
        ping(&mut first, b"one");
        ping(&mut second, b"two");
        for _ in 0..3 {
            let mut extra = connect(server.addr);
            assert!(
                closed_without_answer(&mut extra, ANSWER_LIMIT),
                "mode {mode}: connection 3 must be closed at once"
            );
        }
        // The admitted ones are undisturbed.
        ping(&mut first, b"still one");
        ping(&mut second, b"still two");
        // A slot is given back before the server closes the connection:
        // once the client has seen the server's FIN, the slot is free.
        first
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown(SHUT_WR)");
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut first, &mut rest).expect("EOF from the server");
        assert!(rest.is_empty());
        let mut third = connect(server.addr);
        ping(&mut third, b"three");
        drop((first, second, third));
        let stderr = server.stop();
        let (conns, _) = summary_counts(&stderr, &format!("blocking:{mode}"));
        assert_eq!(conns, 3, "mode {mode}: refused connections are not counted");
    }
}

#[test]
fn thread_mode_survives_a_full_descriptor_table_without_spinning() {
    let mut server = Server::start_with_nofile(&["--mode", "thread"], 64);
    let mut flood: Vec<_> = (0..100).map(|_| connect(server.addr)).collect();
    // Ask every connection for an answer: the first ~58 get one, the rest
    // are refused (closed) by the spare-descriptor trick, none hangs.
    let before = cpu_ticks(server.pid());
    let start = Instant::now();
    let mut answered = 0;
    let mut refused = 0;
    for c in &mut flood {
        if closed_without_answer(c, Duration::from_secs(2)) {
            refused += 1;
        } else {
            answered += 1;
        }
    }
    thread::sleep(Duration::from_millis(500));
    let ticks = cpu_ticks(server.pid()) - before;
    let elapsed = start.elapsed();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = ticks as f64 / hz / elapsed.as_secs_f64();
    assert!(
        cpu < 0.5,
        "server used {:.0} % CPU while flooded",
        cpu * 100.0
    );
    assert_eq!(answered + refused, 100);
    assert!(
        answered > 0 && refused > 0,
        "{answered} answered, {refused} refused"
    );
    assert!(
        server.stderr().contains("Too many open files"),
        "{}",
        server.stderr()
    );
    drop(flood);
    // Serving again once descriptors are free (threads end as their
    // clients leave; give them a moment).
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut c = connect(server.addr);
        if !closed_without_answer(&mut c, ANSWER_LIMIT) {
            break;
        }
        assert!(Instant::now() < deadline, "not serving after the flood");
        thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn thread_mode_closes_a_connection_it_gets_no_thread_for_and_goes_on() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "skipped: RLIMIT_NPROC binds only a non-root user, and only root can switch to one"
        );
        return;
    }
    // 6 tasks for user nobody: main, stop and 4 connection threads (the
    // binary must be readable by nobody, as it is in target/).
    let mut server = Server::start_as_nobody_with_nproc(&["--mode", "thread"], 6);
    let mut served = Vec::new();
    for i in 0..4 {
        let mut c = connect(server.addr);
        ping(&mut c, format!("client {i}").as_bytes());
        served.push(c);
    }
    for _ in 0..3 {
        let mut c = connect(server.addr);
        assert!(
            closed_without_answer(&mut c, ANSWER_LIMIT),
            "no thread, so closed at once"
        );
    }
    for c in &mut served {
        ping(c, b"undisturbed");
    }
    assert!(
        server.stderr().contains("pthread_create"),
        "{}",
        server.stderr()
    );
    // Threads end as their clients leave: the server serves again.
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut c = connect(server.addr);
        if !closed_without_answer(&mut c, ANSWER_LIMIT) {
            break;
        }
        assert!(Instant::now() < deadline, "not serving after threads ended");
        thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn a_process_killed_while_serving_gives_its_slot_back() {
    // The reviewer's experiment: the one slot is taken, every process that
    // could hold it is SIGKILLed, the client leaves. Before the parent gave
    // a killed prefork worker's slot back, every later client was closed.
    for mode in ["fork", "prefork"] {
        let mut server = Server::start(&["--mode", mode, "--workers", "2", "--max-conns", "1"]);
        let mut client = connect(server.addr);
        ping(&mut client, b"served");
        let children: Vec<i32> = server.children().iter().map(|p| p.pid).collect();
        assert!(!children.is_empty(), "mode {mode}: no child serves");
        for pid in children {
            // SAFETY: kill takes no pointers; `pid` is the server's child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        drop(client);
        // The parent reaps (and prefork replaces) its children: give it a moment.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let mut c = connect(server.addr);
            if !closed_without_answer(&mut c, ANSWER_LIMIT) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mode {mode}: the killed child's slot was never given back"
            );
            thread::sleep(Duration::from_millis(50));
        }
        server.stop();
    }
}
