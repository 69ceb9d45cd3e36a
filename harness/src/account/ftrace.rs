//! A private ftrace instance (tracefs `instances/NAME`) and the one parser
//! of its text output: what `phases::uring` reads io_uring's tracepoints
//! with, and `account::profile` the server's system calls and switches.
//!
//! An instance has its own ring buffer, events, filters and on/off switch,
//! so it does not disturb the top-level trace or another instance. Its
//! clock is set to `mono` (`CLOCK_MONOTONIC`): the kernel's default `local`
//! clock is per CPU and not ordered across CPUs, and a thread that migrates
//! would then seem to leave a call before it entered it. ftrace prints
//! times in µs: that is the resolution of every time read here.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::tracefs;

/// One line of ftrace's text output.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub comm: String,
    pub pid: i32,
    /// The CPU it was recorded on.
    pub cpu: u32,
    pub ts: f64,
    pub name: String,
    pub fields: String,
}

/// Parses `  comm-pid  [cpu] flags  ts: name: fields`; `None` for comment
/// lines and anything else.
pub fn parse_line(line: &str) -> Option<Event> {
    let open = line.find(" [")?;
    let head = line[..open].trim();
    let dash = head.rfind('-')?;
    let pid = head[dash + 1..].parse().ok()?;
    let comm = head[..dash].to_string();
    let rest = &line[open + 2..];
    let close = rest.find(']')?;
    let cpu = rest[..close].trim().parse().ok()?;
    let rest = &rest[close + 1..];
    let colon = rest.find(": ")?;
    let ts: f64 = rest[..colon].split_whitespace().last()?.parse().ok()?;
    let rest = &rest[colon + 2..];
    let (name, fields) = match rest.find(": ") {
        Some(c) => (&rest[..c], &rest[c + 2..]),
        None => (rest.trim_end_matches(':'), ""),
    };
    Some(Event {
        comm,
        pid,
        cpu,
        ts,
        name: name.to_string(),
        fields: fields.to_string(),
    })
}

/// The value after `key` in an event's fields (`ring 0x…, req 0x…` or
/// `next_pid=100`).
pub fn field<'a>(fields: &'a str, key: &str) -> Option<&'a str> {
    let mut words = fields.split([' ', ',', '=']).filter(|w| !w.is_empty());
    while let Some(w) = words.next() {
        if w == key {
            return words.next();
        }
    }
    None
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("write {value:?} to {}: {e}", path.display()),
        )
    })
}

/// A private ftrace instance with some events enabled; removed on drop.
pub struct Instance {
    dir: PathBuf,
    events: Vec<String>,
}

impl Instance {
    /// Creates instance `harness-TAG-PID-N` with a ring buffer of
    /// `buffer_kb` per CPU and `events` (`category/name`, with an optional
    /// filter) enabled, recording nothing until [`Instance::on`].
    pub fn create(
        tag: &str,
        events: &[(&str, Option<String>)],
        buffer_kb: u64,
    ) -> io::Result<Instance> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = tracefs::root().map_err(|e| io::Error::new(io::ErrorKind::NotFound, e))?;
        let dir = Path::new(root).join("instances").join(format!(
            "harness-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", dir.display())))?;
        let instance = Instance {
            dir,
            events: events.iter().map(|(e, _)| e.to_string()).collect(),
        };
        // A new instance records from the start.
        write(&instance.dir.join("tracing_on"), "0")?;
        write(&instance.dir.join("trace_clock"), "mono")?;
        write(&instance.dir.join("buffer_size_kb"), &buffer_kb.to_string())?;
        for (ev, filter) in events {
            let d = instance.dir.join("events").join(ev);
            if let Some(f) = filter {
                write(&d.join("filter"), f)?;
            }
            write(&d.join("enable"), "1")?;
        }
        Ok(instance)
    }

    /// `create`, then `on`.
    pub fn start(
        tag: &str,
        events: &[(&str, Option<String>)],
        buffer_kb: u64,
    ) -> io::Result<Instance> {
        let instance = Instance::create(tag, events, buffer_kb)?;
        instance.on()?;
        Ok(instance)
    }

    pub fn on(&self) -> io::Result<()> {
        write(&self.dir.join("tracing_on"), "1")
    }

    pub fn off(&self) -> io::Result<()> {
        write(&self.dir.join("tracing_on"), "0")
    }

    /// Writes `text` into the trace (`trace_marker`: a `tracing_mark_write`
    /// event of the calling thread, stamped on the instance's clock).
    pub fn mark(&self, text: &str) -> io::Result<()> {
        write(&self.dir.join("trace_marker"), text)
    }

    /// Every event recorded so far, in time order across CPUs.
    pub fn read(&self) -> io::Result<Vec<Event>> {
        let path = self.dir.join("trace");
        let text = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("read {}: {e}", path.display())))?;
        Ok(text.lines().filter_map(parse_line).collect())
    }

    /// Stops recording and reads every event recorded.
    pub fn finish(&self) -> io::Result<Vec<Event>> {
        self.off()?;
        self.read()
    }

    /// Events the ring buffer lost, summed over CPUs: overwritten when it
    /// was full (`overrun`) or dropped (`dropped events`).
    pub fn lost(&self) -> u64 {
        let Ok(cpus) = fs::read_dir(self.dir.join("per_cpu")) else {
            return 0;
        };
        cpus.filter_map(|c| fs::read_to_string(c.ok()?.path().join("stats")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        matches!(k.trim(), "overrun" | "dropped events")
                            .then(|| v.trim().parse::<u64>().ok())?
                    })
                    .collect::<Vec<_>>()
            })
            .sum()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Best effort: events must be off before the instance can go; a
        // leftover instance only costs its buffer.
        let _ = fs::write(self.dir.join("tracing_on"), "0");
        for ev in &self.events {
            let _ = fs::write(self.dir.join("events").join(ev).join("enable"), "0");
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ftrace_line_parses_into_comm_pid_time_and_fields() {
        let e = parse_line(
            "   iou-wrk-1 2-77  [003] d..1. 5.250001: io_uring_complete: ring 0x1, req 0x2, result 3",
        )
        .expect("an event line");
        assert_eq!((e.comm.as_str(), e.pid, e.cpu), ("iou-wrk-1 2", 77, 3));
        assert!((e.ts - 5.250001).abs() < 1e-9);
        assert_eq!(e.name, "io_uring_complete");
        assert_eq!(field(&e.fields, "result"), Some("3"));
        assert_eq!(parse_line("# tracer: nop"), None);
        let m =
            parse_line("        harness-9 [000] ..... 7.000001: tracing_mark_write: harness begin")
                .expect("a marker");
        assert_eq!(
            (m.name.as_str(), m.fields.as_str()),
            ("tracing_mark_write", "harness begin")
        );
    }
}
