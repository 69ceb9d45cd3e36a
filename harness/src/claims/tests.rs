//! The verdict rules on fixed figures, each in both directions: a figure
//! that supports the claim and one that refutes it.

use super::*;
use crate::phases::Totals;

fn holds_in_some_form(v: &Verdict) -> bool {
    matches!(v, Verdict::Holds | Verdict::HoldsWithCaveat(_))
}

fn refuted(v: &Verdict) -> bool {
    matches!(v, Verdict::DoesNotHold(_))
}

#[test]
fn noise_is_not_a_difference() {
    assert_eq!(compare(&[10.0, 11.0], &[10.5, 12.0]), Cmp::Same);
    assert_eq!(compare(&[10.0, 10.1], &[10.8, 10.9]), Cmp::Same);
    assert_eq!(compare(&[10.0, 10.2], &[20.0, 21.0]), Cmp::Less);
    assert_eq!(compare(&[30.0, 31.0], &[20.0, 21.0]), Cmp::More);
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

fn c3(rate_many: f64, pool_rate: f64, pool_unserved: usize) -> C3 {
    C3 {
        idle: 2000,
        rate_few: vec![20_000.0, 21_000.0],
        rate_many: vec![rate_many, rate_many],
        errors_many: 0,
        rss_few_kib: 4_000,
        rss_many_kib: 40_000,
        pool_workers: 128,
        pool_rate_many: pool_rate,
        pool_unserved,
    }
}

#[test]
fn c3_wall_and_pool_starvation() {
    assert_eq!(c3_verdict(&c3(2_000.0, 0.0, 10)), Verdict::Holds);
    let v = c3_verdict(&c3(19_000.0, 0.0, 10));
    assert!(
        matches!(&v, Verdict::HoldsWithCaveat(c) if c.contains("18 KiB")),
        "{v:?}"
    );
    assert!(refuted(&c3_verdict(&c3(19_000.0, 19_000.0, 0))));
}

#[test]
fn c4_spin_burns_a_cpu() {
    assert_eq!(c4_verdict(0.99), Verdict::Holds);
    assert!(refuted(&c4_verdict(0.02)));
}

#[test]
fn c5_one_thread_and_cost_growing_with_idle() {
    assert_eq!(
        c5_verdict(1, &[10.0, 10.5], &[10.2, 10.8], 500),
        Verdict::Holds
    );
    assert!(matches!(
        c5_verdict(1, &[10.0, 10.5], &[20.0, 21.0], 500),
        Verdict::HoldsWithCaveat(_)
    ));
    assert!(refuted(&c5_verdict(3, &[10.0], &[10.0], 500)));
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
fn c10_the_kernel_copies() {
    assert!(holds_in_some_form(&c10_verdict(
        &totals(0, 0),
        Some("io_uring_enter")
    )));
    assert!(refuted(&c10_verdict(&totals(0, 2), Some("io_uring_enter"))));
    assert!(refuted(&c10_verdict(&totals(0, 0), Some("epoll_wait"))));
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
fn c12_switches_and_cpu_compared_beyond_noise() {
    assert_eq!(
        c12_verdict(None, &[0.1, 0.1], &[2.0, 2.1], &[10.0, 10.5], &[20.0, 21.0]),
        Verdict::Holds
    );
    assert_eq!(
        c12_verdict(None, &[2.0, 2.1], &[2.0, 2.1], &[10.0, 10.5], &[10.2, 10.6]),
        Verdict::NoMeasurableDifference
    );
    assert!(refuted(&c12_verdict(
        None,
        &[0.1, 0.1],
        &[2.0, 2.1],
        &[30.0, 31.0],
        &[20.0, 21.0]
    )));
}

fn bench(stackful_ns: f64, switching_ns: f64) -> SwitchBench {
    SwitchBench {
        minutes_old: 0.0,
        stackful_ns,
        thread_round_trip_ns: 9_000.0,
        straight_line_ns: 4_000.0,
        switching_ns,
    }
}

#[test]
fn c12_with_the_micro_benchmark() {
    let (few, many) = (&[0.1, 0.1][..], &[1.0, 1.0][..]);
    let (low, high) = (&[10.0, 10.5][..], &[20.0, 21.0][..]);
    let cheap = bench(20.0, 0.0);
    assert_eq!(
        c12_verdict(Some(&cheap), few, many, low, high),
        Verdict::Holds
    );
    assert!(matches!(
        c12_verdict(Some(&cheap), many, many, low, low),
        Verdict::HoldsWithCaveat(c) if c.contains("20 ns against 9000 ns")
    ));
    assert!(refuted(&c12_verdict(
        Some(&bench(5_000.0, 0.0)),
        few,
        many,
        low,
        high
    )));
}

#[test]
fn c13_a_handoff_costs_more_than_a_call() {
    let s = |handoff, call| Switching {
        thread_handoff_ns: handoff,
        switches_per_round_trip: 1.0,
        call_ns: call,
    };
    assert_eq!(c13_verdict(&s(3_000.0, 2.0), None), Verdict::Holds);
    assert_eq!(
        c13_verdict(&s(5.0, 2.0), None),
        Verdict::NoMeasurableDifference
    );
    // With the micro-benchmark, the same work with switches decides.
    assert_eq!(
        c13_verdict(&s(5.0, 2.0), Some(&bench(20.0, 9_000.0))),
        Verdict::Holds
    );
    assert_eq!(
        c13_verdict(&s(3_000.0, 2.0), Some(&bench(20.0, 4_100.0))),
        Verdict::NoMeasurableDifference
    );
}

#[test]
fn c14_one_thread_one_core() {
    assert!(matches!(
        c14_verdict(1, 0.98, 2),
        Verdict::HoldsWithCaveat(_)
    ));
    assert_eq!(c14_verdict(1, 0.98, 8), Verdict::Holds);
    assert!(refuted(&c14_verdict(1, 1.9, 8)));
}

#[test]
fn c15_the_rate_is_the_machines() {
    assert!(matches!(
        c15_verdict(60_000.0, 8.0, 1),
        Verdict::HoldsWithCaveat(_)
    ));
    let v = c15_verdict(30_000.0, 25.0, 1);
    assert!(
        matches!(&v, Verdict::DoesNotHold(w) if w.contains("at 40000/s")),
        "{v:?}"
    );
    // The server could, the load generator could not offer it.
    assert!(matches!(
        c15_verdict(14_000.0, 8.0, 1),
        Verdict::NotApplicable(_)
    ));
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
fn c18_fork_copies_tables_not_memory() {
    let c = |thread_us, fork_us, fork_big_us| Creation {
        thread_us,
        fork_us,
        fork_big_us,
        copy_big_us: 30_000.0,
    };
    assert!(matches!(
        c18_verdict(&c(20.0, 150.0, 900.0)),
        Verdict::HoldsWithCaveat(_)
    ));
    assert_eq!(c18_verdict(&c(20.0, 150.0, 40_000.0)), Verdict::Holds);
    assert!(refuted(&c18_verdict(&c(150.0, 150.0, 900.0))));
}

#[test]
fn every_claim_has_a_row_and_a_missing_model_is_never_a_verdict() {
    let ids: Vec<&str> = CLAIMS.iter().map(|(id, _)| *id).collect();
    let expected: Vec<String> = (1..=18).map(|n| format!("C{n}")).collect();
    assert_eq!(ids, expected);
    let mut lab = Lab::default();
    lab.missing
        .insert("uring".into(), Some("no `uring` binary (test)".into()));
    let r = row(&mut lab, "C10", "claim");
    assert_eq!(
        r.verdict,
        Verdict::NotYetMeasured("no `uring` binary (test)".into())
    );
    assert_eq!(r.commands, ["harness phases uring:single"]);
}

#[test]
fn the_table_escapes_cells_and_lists_commands() {
    let rows = [Row {
        id: "C4",
        claim: "a | b",
        verdict: Verdict::Holds,
        figures: "99 %".into(),
        commands: vec!["harness claims --only C4".into()],
    }];
    let env = crate::account::environment();
    let text = render(&rows, &env, 1.0);
    assert!(
        text.contains("| C4 | a \\| b | **holds** | 99 % | `harness claims --only C4` |"),
        "{text}"
    );
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
