//! The phase classification on recorded traces: lines copied from
//! `harness phases ... --raw` runs of this lab's models (the io_uring one
//! written in strace's format by hand: no uring model was traced yet).

use super::*;

/// `harness phases epoll:level --raw`: an interrupted epoll_wait (another
/// thread's line between its halves), then request 2's wait, copy in, copy out.
const EPOLL: &str = "\
22926 1796134553.677455 epoll_wait(5,  <unfinished ...>
22923 1796134553.677503 futex(0x7f4e6b078990, FUTEX_WAIT_BITSET|FUTEX_CLOCK_REALTIME, 22926, NULL, FUTEX_BITSET_MATCH_ANY <unfinished ...>
22926 1796134553.689471 <... epoll_wait resumed>[{events=EPOLLIN, data={u32=4294967295, u64=18446744073709551615}}], 1024, -1) = 1 <0.011970>
22926 1796134553.730316 recvfrom(11, \"phase request 1\\n\", 65536, 0, NULL, NULL) = 16 <0.000011>
22926 1796134553.730388 sendto(11, \"PHASE REQUEST 1\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000017>
22926 1796134553.730439 epoll_wait(5, [{events=EPOLLIN, data={u32=11, u64=11}}], 1024, -1) = 1 <0.020187>
22926 1796134553.750703 recvfrom(11, \"phase request 2\\n\", 65536, 0, NULL, NULL) = 16 <0.000012>
22926 1796134553.750772 sendto(11, \"PHASE REQUEST 2\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000015>
22926 1796134553.750818 epoll_wait(5, [{events=EPOLLIN, data={u32=11, u64=11}}], 1024, -1) = 1 <0.020186>
";

/// `harness phases blocking:thread --raw`: the connection's thread blocks in
/// read, which returns the request 20 ms later.
const BLOCKING: &str = "\
27731 1796134622.896448 accept4(4, NULL, NULL, SOCK_CLOEXEC <unfinished ...>
27731 1796134622.905625 <... accept4 resumed>) = 6 <0.009118>
27785 1796134622.951818 sendto(6, \"PHASE REQUEST 1\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000098>
27785 1796134622.951995 read(6, \"phase request 2\\n\", 16384) = 16 <0.020132>
27785 1796134622.972198 sendto(6, \"PHASE REQUEST 2\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000030>
27785 1796134622.972285 read(6, \"phase request 3\\n\", 16384) = 16 <0.020129>
";

/// `harness phases nonblocking:spin --raw`, shortened: a sweep of EAGAIN
/// answers over every socket, then the one that has data.
const SPIN: &str = "\
23851 1796134600.000100 sendto(9, \"PHASE REQUEST 1\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000060>
23851 1796134600.000200 recvfrom(8, 0x561efdf0eb70, 65536, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000050>
23851 1796134600.000300 read(3, 0x7ffdcf257cd8, 128) = -1 EAGAIN (Resource temporarily unavailable) <0.000046>
23851 1796134600.000400 accept4(4, NULL, NULL, SOCK_CLOEXEC|SOCK_NONBLOCK) = -1 EAGAIN (Resource temporarily unavailable) <0.000066>
23851 1796134600.020000 recvfrom(9, 0x561efdf0eb70, 65536, 0, NULL, NULL) = -1 EAGAIN (Resource temporarily unavailable) <0.000050>
23851 1796134600.020520 recvfrom(9, \"phase request 2\\n\", 65536, 0, NULL, NULL) = 16 <0.000050>
23851 1796134600.020650 sendto(9, \"PHASE REQUEST 2\\n\", 16, MSG_NOSIGNAL, NULL, 0) = 16 <0.000060>
";

/// io_uring in strace's format (hand-written): submit, then wait for one
/// completion; the kernel does the copies.
const URING: &str = "\
500 1796134700.000000 io_uring_enter(4, 1, 0, 0, NULL, 8) = 1 <0.000010>
500 1796134700.000020 io_uring_enter(4, 0, 1, IORING_ENTER_GETEVENTS, NULL, 8) = 1 <0.020000>
500 1796134700.020040 io_uring_enter(4, 1, 0, 0, NULL, 8) = 1 <0.000012>
";

fn call(text: &str) -> Call {
    let calls = parse_strace(text);
    assert_eq!(calls.len(), 1, "{text}");
    calls.into_iter().next().unwrap()
}

#[test]
fn strace_lines_parse_with_resumed_calls_joined() {
    let calls = parse_strace(EPOLL);
    // The futex never resumed in the excerpt: it is not a call yet.
    assert_eq!(calls.len(), 7);
    let first = &calls[0];
    assert_eq!(first.name, "epoll_wait");
    assert_eq!(first.tid, 22926);
    assert!((first.start - 1796134553.677455).abs() < 1e-6);
    assert!((first.duration - 0.011970).abs() < 1e-9);
    assert_eq!(first.outcome, Outcome::Value(1));
    assert!(
        first.args.starts_with("5, [{events=EPOLLIN"),
        "{}",
        first.args
    );
    let eagain = call(SPIN.lines().nth(1).unwrap());
    assert_eq!(eagain.outcome, Outcome::Error("EAGAIN".into()));
    assert_eq!(eagain.name, "recvfrom");
    assert!(parse_strace("27785 +++ exited with 0 +++\nnot a line\n").is_empty());
    // A short tid is padded to strace's column width.
    let padded = call("5298  1796135544.155450 close(7) = 0 <0.000010>");
    assert_eq!((padded.tid, padded.name.as_str()), (5298, "close"));
}

#[test]
fn each_shape_is_classified() {
    let epoll = parse_strace(EPOLL);
    let phases: Vec<Phase> = epoll.iter().map(classify).collect();
    use Phase::*;
    assert_eq!(phases, [Wait, Copy, Copy, Wait, Copy, Copy, Wait]);

    let blocking = parse_strace(BLOCKING);
    let phases: Vec<Phase> = blocking.iter().map(classify).collect();
    assert_eq!(phases, [Other, Copy, WaitThenCopy, Copy, WaitThenCopy]);

    let spin = parse_strace(SPIN);
    let phases: Vec<Phase> = spin.iter().map(classify).collect();
    assert_eq!(phases, [Copy, Wait, Wait, Wait, Wait, Copy, Copy]);

    let uring = parse_strace(URING);
    let phases: Vec<Phase> = uring.iter().map(classify).collect();
    assert_eq!(phases, [Other, Wait, Other]);

    // A read of 0 (EOF) moves nothing; a quick read moves without waiting.
    let eof = call("1 1.0 read(6, \"\", 16384) = 0 <0.030000>");
    assert_eq!(classify(&eof), Other);
    let quick = call("1 1.0 read(6, \"x\", 16384) = 1 <0.000010>");
    assert_eq!(classify(&quick), Copy);
}

fn times(sent: f64, replied: f64) -> RequestTimes {
    RequestTimes { sent, replied }
}

#[test]
fn the_window_is_one_request_from_its_wait_to_its_reply() {
    let calls = parse_strace(EPOLL);
    let t = [
        times(1796134553.7302, 1796134553.7304),
        times(1796134553.7506, 1796134553.7508),
    ];
    let w = request_window(&calls, &t, 1);
    let names: Vec<&str> = w.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["epoll_wait", "recvfrom", "sendto"]);
    assert!(w[1].args.contains("phase request 2"));
    let totals = totals(&w);
    assert!((totals.wait_s - 0.020187).abs() < 1e-6, "{totals:?}");
    assert!((totals.copy_s - 0.000027).abs() < 1e-6, "{totals:?}");
    assert_eq!(
        (totals.calls, totals.copies, totals.wait_then_copy),
        (3, 2, 0)
    );
    assert_eq!(main_wait(&w).as_deref(), Some("epoll_wait"));
}

#[test]
fn a_busy_poll_run_is_one_wait_segment_spanning_it() {
    let calls = parse_strace(SPIN);
    let t = [
        times(1796134599.9999, 1796134600.0002),
        times(1796134600.0203, 1796134600.0208),
    ];
    let w = request_window(&calls, &t, 1);
    let segs = segments(&w);
    assert_eq!(segs.len(), 3);
    assert!(segs[0].is_busy_poll());
    assert_eq!(segs[0].calls.len(), 4);
    assert_eq!(segs[0].phase, Phase::Wait);
    // From the first EAGAIN's start to the last one's end.
    assert!((segs[0].duration() - (0.020050 - 0.000200)).abs() < 1e-6);
    assert_eq!(main_wait(&w).as_deref(), Some("EAGAIN run"));
    assert_eq!(totals(&w).calls, 6);
}

#[test]
fn headers_are_checked_against_the_trace_both_ways() {
    let epoll = parse_strace(EPOLL);
    let blocking = parse_strace(BLOCKING);
    let uring = parse_strace(URING);
    let says = |s: &str| header_says(&s.parse().unwrap()).unwrap();
    let window = |calls: &[Call]| calls[calls.len() - 3..].to_vec();
    assert!(agrees(&says("epoll:level"), &window(&epoll)).is_ok());
    assert!(agrees(&says("blocking:thread"), &window(&blocking)).is_ok());
    assert!(agrees(&says("uring:single"), &uring).is_ok());
    // An epoll trace is not what select's header says, a blocking trace not
    // what epoll's says, and a trace with copy calls not io_uring's.
    assert!(agrees(&says("select"), &window(&epoll)).is_err());
    assert!(agrees(&says("epoll:edge"), &window(&blocking)).is_err());
    let mut copying = uring.clone();
    copying.push(blocking[1].clone());
    let why = agrees(&says("uring:single"), &copying).unwrap_err();
    assert!(why.contains("1 copy calls"), "{why}");
    assert!(header_says(&"unheard-of".parse().unwrap()).is_none());
}
