//! The lanes of Stevens' figure: the five models' representative requests,
//! traced (`harness phases`) and cut into their wait and copy phases.
//! `harness compare` traces them; `report::phases` draws what it stored.

use serde::{Deserialize, Serialize};

use super::{Phase, Totals};

/// The five models of Stevens' figure, in his order: blocking, nonblocking,
/// I/O multiplexing, signal-driven, asynchronous.
pub const FIVE_MODELS: &[&str] = &[
    "blocking:iterative",
    "nonblocking:spin",
    "epoll:level",
    "sigio:plain",
    "uring:single",
];

/// One lane: a model's request as segments in ms from its first call, or
/// why it could not be traced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    pub model: String,
    pub segments: Vec<Span>,
    pub totals: Option<Totals>,
    pub main_wait: Option<String>,
    pub missing: Option<String>,
    /// For `uring`: where the kernel ran the RECVs' copy (strace cannot
    /// see it: no read call is made), from its io_uring tracepoints.
    #[serde(default)]
    pub kernel_copy: Option<KernelCopy>,
}

/// Where most RECV completions of a traced `uring` request ran their copy,
/// and how long from the thread's return to the CPU to the completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelCopy {
    pub place: String,
    pub recvs: usize,
    pub of: usize,
    pub run_us: Option<f64>,
}

impl KernelCopy {
    fn of(k: &super::uring::KernelTrace) -> Option<KernelCopy> {
        let (at, n) = k.counts().into_iter().max_by_key(|(_, n)| *n)?;
        Some(KernelCopy {
            place: at.label().to_string(),
            recvs: n,
            of: k.recvs.len(),
            run_us: k.median_run_us(at),
        })
    }

    pub fn label(&self) -> String {
        format!(
            "copy: {}{}",
            self.place,
            self.run_us
                .map_or(String::new(), |us| format!(", {us:.0} µs"))
        )
    }
}

/// One segment of a lane, in ms from the request's first call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub start_ms: f64,
    pub end_ms: f64,
    pub phase: Phase,
    /// The call, or `EAGAIN ×N` for a busy-poll run.
    pub call: String,
}

/// Traces one model for its lane; a model that is not in the workspace or
/// fails to trace gets a lane that says why.
pub fn lane(model: &str) -> Lane {
    let traced = match model.parse() {
        Err(e) => Err(e),
        Ok(spec) => match crate::server::unavailable(&model_name(model)) {
            Some(why) => Err(format!("not yet measured: {why}")),
            None => super::trace(&spec, &[]).map_err(|e| format!("trace failed: {e}")),
        },
    };
    match traced {
        Err(why) => Lane {
            model: model.into(),
            segments: Vec::new(),
            totals: None,
            main_wait: None,
            missing: Some(why),
            kernel_copy: None,
        },
        Ok(t) => {
            let origin = t.calls.first().map_or(0.0, |c| c.start);
            Lane {
                model: model.into(),
                segments: super::segments(&t.calls)
                    .iter()
                    .map(|s| Span {
                        start_ms: (s.start - origin) * 1e3,
                        end_ms: (s.end - origin) * 1e3,
                        phase: s.phase,
                        call: if s.is_busy_poll() {
                            format!("EAGAIN ×{}", s.calls.len())
                        } else {
                            s.calls[0].name.clone()
                        },
                    })
                    .collect(),
                totals: Some(t.totals),
                main_wait: super::main_wait(&t.calls),
                missing: None,
                kernel_copy: match &t.kernel {
                    Some(Ok(k)) => KernelCopy::of(k),
                    _ => None,
                },
            }
        }
    }
}

fn model_name(model: &str) -> String {
    model.split(':').next().unwrap_or(model).to_owned()
}

/// The lanes of the five models, in Stevens' order.
pub fn five() -> Vec<Lane> {
    FIVE_MODELS.iter().map(|m| lane(m)).collect()
}
