//! The verdict rules on fixed figures, each in both directions: a figure
//! that supports the claim and one that refutes it.

use super::coroutines::*;
use super::lab::Said;
use super::processes::*;
use super::readiness::*;
use super::traced::*;
use super::*;
use crate::phases::uring::{KernelTrace, Recv, Where};
use crate::phases::Totals;

fn holds_in_some_form(v: &Verdict) -> bool {
    matches!(v, Verdict::Holds | Verdict::HoldsWithCaveat(_))
}

fn refuted(v: &Verdict) -> bool {
    matches!(v, Verdict::DoesNotHold(_))
}

fn totals(wait_then_copy: usize, copies: usize) -> Totals {
    Totals {
        wait_s: 0.02,
        copy_s: 0.0001,
        other_s: 0.0,
        calls: 3,
        wait_then_copy,
        copies,
    }
}

#[test]
fn c1_holds_only_when_one_read_waits_and_copies() {
    assert_eq!(c1_verdict(&totals(1, 2), Some("read")), Verdict::Holds);
    assert!(refuted(&c1_verdict(&totals(0, 2), Some("epoll_wait"))));
}

#[test]
fn c2_needs_the_iterative_contrast() {
    assert_eq!(c2_verdict(Some(0.3), None), Verdict::Holds);
    assert!(refuted(&c2_verdict(None, None)));
    assert!(matches!(
        c2_verdict(Some(0.3), Some(0.2)),
        Verdict::NotApplicable(_)
    ));
}

#[test]
fn c4_spin_burns_a_cpu() {
    assert_eq!(c4_verdict(0.99), Verdict::Holds);
    assert!(refuted(&c4_verdict(0.02)));
}

#[test]
fn c6_says_which_limit_bites() {
    assert!(matches!(
        c6_verdict(80, 0, true),
        Verdict::HoldsWithCaveat(c) if c.contains("FD_SETSIZE")
    ));
    assert_eq!(c6_verdict(80, 0, false), Verdict::Holds);
    assert!(refuted(&c6_verdict(0, 0, true)));
}

#[test]
fn c7_epoll_sleeps_instead_of_polling() {
    assert!(refuted(&c7_verdict(0.001, 1)));
    assert_eq!(c7_verdict(0.95, 40), Verdict::Holds);
}

#[test]
fn c8_nonblocking_send_does_not_block() {
    assert!(matches!(
        c8_verdict(true, true),
        Verdict::HoldsWithCaveat(_)
    ));
    assert_eq!(c8_verdict(true, false), Verdict::Holds);
}

#[test]
fn c11_waiting_is_free_io_is_not() {
    assert!(matches!(
        c11_verdict(0.0, 12.0, 0.8),
        Verdict::HoldsWithCaveat(c) if c.contains("80 %")
    ));
    assert_eq!(c11_verdict(0.0, 12.0, 0.2), Verdict::Holds);
    assert!(refuted(&c11_verdict(0.3, 12.0, 0.8)));
}

#[test]
fn c16_straight_line_code_waits_in_epoll() {
    assert!(holds_in_some_form(&c16_verdict(
        &totals(0, 2),
        Some("epoll_wait")
    )));
    assert!(refuted(&c16_verdict(&totals(1, 2), Some("read"))));
}

#[test]
fn c17_a_zombie_holds_its_pid_only() {
    let z = |rss_kib, fds| Zombie {
        was_zombie: true,
        rss_kib,
        fds,
        gone_after_wait: true,
    };
    assert!(matches!(c17_verdict(&z(0, 0)), Verdict::HoldsWithCaveat(_)));
    assert_eq!(c17_verdict(&z(900, 3)), Verdict::Holds);
    let never = Zombie {
        was_zombie: false,
        ..z(0, 0)
    };
    assert!(refuted(&c17_verdict(&never)));
}

#[test]
fn the_kernels_select_takes_a_descriptor_beyond_fd_setsize() {
    assert!(probe::kernel_select_beyond_fd_setsize().unwrap());
}

#[test]
fn an_exited_child_is_a_zombie_until_waited_for_and_holds_no_memory() {
    let z = probe::zombie().unwrap();
    assert!(z.was_zombie && z.gone_after_wait, "{z:?}");
    assert_eq!((z.rss_kib, z.fds), (0, 0), "{z:?}");
}

fn rounds(v: &[f64]) -> Vec<stats::InRound> {
    v.iter().copied().enumerate().collect()
}

#[test]
fn comparisons_use_the_reports_rule_and_are_decided_over_the_document() {
    // The same figures: a 10 % difference in every round is a difference
    // alone, and within the equivalence margin it is none.
    let a = rounds(&[1.10, 1.02, 1.16, 1.04, 1.14]);
    let b = rounds(&[1.0; 5]);
    let same = rounds(&[1.0, 1.01, 0.99, 1.0, 1.005]);
    let first = Family::collecting();
    let family = {
        first.judge("x", &a, &b);
        first.adjust()
    };
    assert_eq!(lab::said(&family.judge("x", &a, &b)), Said::Higher);
    assert_eq!(lab::said(&family.judge("x", &b, &a)), Said::Lower);
    assert_eq!(
        lab::said(&Family::collecting().judge("y", &same, &b)),
        Said::Same
    );
    assert_eq!(
        lab::said(&Family::collecting().judge("z", &a[..2], &b)),
        Said::TooFew
    );
    let text = lab::ratio(&family.judge("x", &a, &b));
    assert!(
        text.starts_with("×1.09 [") && text.ends_with("higher"),
        "{text}"
    );
}

fn recv(at: Where) -> Recv {
    Recv {
        at,
        comm: "uring".into(),
        bytes: 18,
        queued_to_done_us: Some(40.0),
        run_us: Some(11.0),
    }
}

#[test]
fn c10_is_decided_by_where_the_kernel_ran_the_copy() {
    let own = KernelTrace {
        recvs: vec![recv(Where::TaskWorkInEnter); 5],
        async_work: 0,
    };
    let v = c10_verdict(0, Some("io_uring_enter"), Ok(&own));
    assert!(
        matches!(&v, Verdict::DoesNotHold(w) if w.contains("5 ran as task work") && w.contains("median 11 µs")),
        "{v:?}"
    );
    let worker = KernelTrace {
        recvs: vec![recv(Where::KernelThread), recv(Where::Inline)],
        async_work: 1,
    };
    assert!(holds_in_some_form(&c10_verdict(
        0,
        Some("io_uring_enter"),
        Ok(&worker)
    )));
    // strace's view still refutes it, and no trace is never a verdict.
    assert!(refuted(&c10_verdict(
        2,
        Some("io_uring_enter"),
        Ok(&worker)
    )));
    assert!(refuted(&c10_verdict(0, Some("epoll_wait"), Ok(&worker))));
    let why = "no tracefs".to_string();
    assert!(matches!(
        c10_verdict(0, Some("io_uring_enter"), Err(&why)),
        Verdict::NotYetMeasured(_)
    ));
    assert!(matches!(
        c10_verdict(0, Some("io_uring_enter"), Ok(&KernelTrace::default())),
        Verdict::NotYetMeasured(_)
    ));
}

fn c3(rate_many: f64, pool_unserved: usize) -> C3 {
    C3 {
        cpu_few: rounds(&[10.0; 4]),
        cpu_many: rounds(&[10.0; 4]),
        p99_few: rounds(&[100.0; 4]),
        p99_many: rounds(&[100.0; 4]),
        rate_many: rounds(&[rate_many; 4]),
        errors_many: 0,
        rss_per_thread_kib: rounds(&[18.0, 19.0, 18.0, 18.0]),
        pool_unserved,
    }
}

#[test]
fn c3_wall_memory_and_pool_starvation() {
    // A cost that grows with the threads is the wall.
    let v = c3_verdict(&c3(5000.0, 10), Said::Higher, Said::Same);
    assert!(
        matches!(&v, Verdict::HoldsWithCaveat(c) if c.contains("cost per request grows")),
        "{v:?}"
    );
    // Not keeping up at the offered load is the wall too.
    assert!(
        matches!(c3_verdict(&c3(3000.0, 0), Said::Same, Said::Same), Verdict::HoldsWithCaveat(c) if c.contains("pool of 128 answered"))
    );
    // No wall: the price is memory, attributed to what RSS holds.
    let v = c3_verdict(&c3(5000.0, 10), Said::Same, Said::Same);
    assert!(
        matches!(&v, Verdict::HoldsWithCaveat(c) if c.contains("18 KiB of RSS") && c.contains("not in RSS") && c.contains("left 10 unanswered")),
        "{v:?}"
    );
    assert!(matches!(
        c3_verdict(&c3(5000.0, 0), Said::NotResolved, Said::Same),
        Verdict::NotResolved(_)
    ));
    assert!(refuted(&c3_verdict(
        &c3(5000.0, 0),
        Said::Same,
        Said::Lower
    )));
}

#[test]
fn c5_one_thread_and_cost_growing_with_the_sockets_at_a_fixed_load() {
    assert_eq!(c5_verdict(1, &[Said::Same; 3], Said::Same), Verdict::Holds);
    assert!(matches!(
        c5_verdict(1, &[Said::Same, Said::Higher, Said::Higher], Said::Higher),
        Verdict::HoldsWithCaveat(_)
    ));
    assert!(matches!(
        c5_verdict(1, &[Said::Same, Said::NotResolved, Said::Same], Said::Same),
        Verdict::NotResolved(_)
    ));
    assert!(refuted(&c5_verdict(3, &[Said::Same; 3], Said::Same)));
}

#[test]
fn c9_is_never_decided_here_but_says_whether_its_cost_explains_it() {
    let v = c9_verdict(Said::Higher, Said::Same);
    assert!(
        matches!(&v, Verdict::NotDecidedHere(w) if w.contains("Its cost explains it")),
        "{v:?}"
    );
    let v = c9_verdict(Said::Same, Said::NotResolved);
    assert!(
        matches!(&v, Verdict::NotDecidedHere(w) if w.contains("does not explain")),
        "{v:?}"
    );
}

fn load(rate: Option<f64>, switches: Said, cpu: Said) -> C12Load {
    C12Load {
        rate,
        switches,
        cpu,
    }
}

#[test]
fn c12_the_switch_and_the_servers_at_every_load() {
    let far = Some((Said::Lower, 0.02));
    let better = || {
        vec![
            load(Some(5000.0), Said::Lower, Said::Lower),
            load(None, Said::Lower, Said::Lower),
        ]
    };
    assert_eq!(c12_verdict(far, &better()), Verdict::Holds);
    // The switch against a same-CPU hand-off decides first: lower but not
    // below a tenth over its whole interval is not "far less".
    assert!(refuted(&c12_verdict(Some((Said::Lower, 0.3)), &better())));
    assert!(refuted(&c12_verdict(Some((Said::Same, 1.05)), &better())));
    assert!(matches!(
        c12_verdict(None, &better()),
        Verdict::NotResolved(_)
    ));
    // More CPU per request at one load refutes it in a server.
    let worse = [
        load(Some(5000.0), Said::Lower, Said::Lower),
        load(Some(40000.0), Said::Lower, Said::Higher),
    ];
    let v = c12_verdict(far, &worse);
    assert!(
        matches!(&v, Verdict::DoesNotHold(w) if w.contains("40000 req/s")),
        "{v:?}"
    );
    // Where both sleep the saving is not shown: the caveat names the loads.
    let mixed = [
        load(Some(5000.0), Said::Lower, Said::NotResolved),
        load(None, Said::Lower, Said::Lower),
    ];
    let v = c12_verdict(far, &mixed);
    assert!(
        matches!(&v, Verdict::HoldsWithCaveat(c) if c.contains("at closed loop; not at 5000 req/s")),
        "{v:?}"
    );
    let none = [load(Some(5000.0), Said::Same, Said::Same)];
    assert!(matches!(c12_verdict(far, &none), Verdict::NotResolved(_)));
}

#[test]
fn c13_a_handoff_against_a_call() {
    assert_eq!(c13_verdict(Said::Higher), Verdict::Holds);
    assert!(matches!(
        c13_verdict(Said::Same),
        Verdict::NoMeasurableDifference(_)
    ));
    assert!(matches!(
        c13_verdict(Said::NotResolved),
        Verdict::NotResolved(_)
    ));
    assert!(refuted(&c13_verdict(Said::Lower)));
}

#[test]
fn c14_one_thread_one_core_against_a_two_core_control() {
    assert!(matches!(
        c14_verdict(1, 0.98, Said::Higher, Said::Same, 2),
        Verdict::HoldsWithCaveat(c) if c.contains("not decided here")
    ));
    assert_eq!(
        c14_verdict(1, 0.98, Said::Higher, Said::Higher, 8),
        Verdict::Holds
    );
    assert!(matches!(
        c14_verdict(1, 0.98, Said::Same, Said::Same, 2),
        Verdict::NotDecidedHere(_)
    ));
    assert!(refuted(&c14_verdict(1, 1.9, Said::Higher, Said::Higher, 8)));
    assert!(refuted(&c14_verdict(3, 0.9, Said::Higher, Said::Higher, 8)));
}

#[test]
fn c15_the_scaled_topology_names_its_limiter() {
    assert!(matches!(
        c15_verdict(Said::Higher, 60_000.0, Limiter::ServerCpu, 8),
        Verdict::HoldsWithCaveat(c) if c.contains("the server's CPUs")
    ));
    assert!(matches!(
        c15_verdict(Said::Same, 52_000.0, Limiter::Neither, 2),
        Verdict::HoldsWithCaveat(c) if c.contains("other processes")
    ));
    // A median above 50 000 whose interval reaches below is not a rate
    // reached.
    for below in [Said::Lower, Said::NotResolved] {
        let v = c15_verdict(below, 58_000.0, Limiter::LoadGenerator, 2);
        assert!(
            matches!(&v, Verdict::NotDecidedHere(w) if w.contains("was not run") && w.contains("limited by the load generator")),
            "{v:?}"
        );
    }
}

#[test]
fn c18_fork_copies_tables_not_memory() {
    assert!(matches!(
        c18_verdict(Said::Lower, Said::Lower),
        Verdict::HoldsWithCaveat(_)
    ));
    assert_eq!(c18_verdict(Said::Lower, Said::Same), Verdict::Holds);
    assert!(refuted(&c18_verdict(Said::Same, Said::Lower)));
    assert!(matches!(
        c18_verdict(Said::NotResolved, Said::Lower),
        Verdict::NotResolved(_)
    ));
}

#[test]
fn every_claim_has_a_row_and_a_missing_model_is_never_a_verdict() {
    let ids: Vec<&str> = CLAIMS.iter().map(|(id, _)| *id).collect();
    let expected: Vec<String> = (1..=18).map(|n| format!("C{n}")).collect();
    assert_eq!(ids, expected);
    let mut lab = lab::Lab::default();
    lab.missing
        .insert("uring".into(), Some("no `uring` binary (test)".into()));
    let (m, commands) = measure(&mut lab, "C10");
    let (rows, family) = rows(&[("C10", "claim", m, commands)]);
    assert_eq!(
        rows[0].verdict,
        Verdict::NotYetMeasured("no `uring` binary (test)".into())
    );
    assert_eq!(rows[0].commands, ["harness phases uring:single"]);
    assert_eq!(family.size(), 0);
}

#[test]
fn the_table_escapes_cells_lists_commands_and_states_the_family() {
    let rows = [Row {
        id: "C4",
        claim: "a | b",
        verdict: Verdict::Holds,
        figures: "99 %".into(),
        commands: vec!["harness claims --only C4".into()],
    }];
    let env = crate::account::environment();
    let text = render(&rows, &Family::collecting().adjust(), &env, 1.0);
    assert!(
        text.contains("| C4 | a \\| b | **holds** | 99 % | `harness claims --only C4` |"),
        "{text}"
    );
    assert!(
        text.contains("over this document's 0 comparisons"),
        "{text}"
    );
    assert!(text.contains("within ±10 %"), "{text}");
}

#[test]
fn a_coroutine_switch_stays_in_user_space_and_a_thread_handoff_does_not() {
    let s = crate::switching::switching().unwrap();
    // Pinned to one CPU, each thread blocks (a voluntary switch) waiting
    // for every reply; the coroutine's resume never enters the kernel.
    assert!(s.switches_per_round_trip >= 0.5, "{s:?}");
    assert!(s.coroutine_switch_ns < s.thread_handoff_ns, "{s:?}");
}
