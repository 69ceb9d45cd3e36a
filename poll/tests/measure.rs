//! Smoke measurements: `harness run`-sized runs of each workload against the
//! poll model, checking that every field of the record is present and
//! consistent. No timing thresholds: this machine's speed is not under test.

use harness::measurement::{Measurement, WorkloadKind};
use harness::run::{measure, MeasureSpec, ServerChoice};

fn quick(kind: WorkloadKind) -> Measurement {
    let server = ServerChoice::binary(env!("CARGO_BIN_EXE_poll"), Some("loop"));
    measure(&MeasureSpec::quick(server, kind)).expect("measurement runs")
}

/// Fields every measurement of a started server must carry, as JSON.
fn assert_complete(m: &Measurement) {
    let json = serde_json::to_value(m).expect("serialises");
    for key in [
        "model",
        "workload",
        "rate",
        "latency",
        "errors",
        "bytes_verified",
        "client",
        "server",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(m.model, "poll:loop");
    assert_eq!(m.errors.total(), 0, "errors: {:?}", m.errors);
    assert!(m.requests > 0, "no request completed");
    assert!(m.rate > 0.0);

    let lat = m.latency.as_ref().expect("latency recorded");
    assert_eq!(lat.samples, m.requests);
    assert!(lat.p50_us > 0.0);
    assert!(lat.p50_us <= lat.p99_us && lat.p99_us <= lat.p999_us && lat.p999_us <= lat.max_us);

    let server = &m.server;
    assert!(server.pid.is_some());
    let user = server.user_s.expect("server user CPU");
    let sys = server.sys_s.expect("server system CPU");
    assert!(
        user >= 0.0 && sys >= 0.0 && user + sys > 0.0,
        "{user} {sys}"
    );
    assert!(server.cpu_per_request_us.expect("cpu per request") > 0.0);
    assert!(server.peak_rss_kib.expect("peak rss") > 0);
    assert!(server.ctx_voluntary.is_some() && server.ctx_involuntary.is_some());
    match &server.syscalls_per_request {
        Some(by_name) => {
            // Each 64-byte request is read once and answered once.
            let reads = by_name.get("recvfrom").copied().unwrap_or(0.0);
            let writes = by_name.get("sendto").copied().unwrap_or(0.0);
            assert!(reads >= 0.9 && writes >= 0.9, "{by_name:?}");
        }
        None => assert!(
            server.syscalls_na_reason.is_some(),
            "syscall counts absent without a reason"
        ),
    }
    let summary = server.exit_summary.as_ref().expect("exit summary parsed");
    assert_eq!(summary.model, "poll:loop");
    assert!(summary.connections >= m.workload.conns as u64);
    assert!(m.client.cpu_per_request_us.expect("client cpu") > 0.0);
}

#[test]
fn pingpong_measurement_is_complete_and_verified() {
    let m = quick(WorkloadKind::Pingpong);
    assert_complete(&m);
    // Verified over the whole run (warm-up included), whole requests only.
    let size = m.workload.size as u64;
    assert!(m.bytes_verified >= m.requests * size);
    assert_eq!(m.bytes_verified % size, 0);
}

#[test]
fn connect_measurement_counts_connections() {
    let m = quick(WorkloadKind::Connect);
    assert_complete(&m);
    let summary = m.server.exit_summary.as_ref().expect("summary");
    assert!(
        summary.connections >= m.requests,
        "{summary:?} vs {}",
        m.requests
    );
}

#[test]
fn idle_measurement_keeps_every_idle_connection() {
    let m = quick(WorkloadKind::Idle);
    assert_complete(&m);
    let idle = m.idle.as_ref().expect("idle outcome");
    assert_eq!(idle.requested, m.workload.idle);
    assert_eq!(idle.dropped(), 0, "{idle:?}");
    assert_eq!(idle.served, idle.requested, "{idle:?}");
}
