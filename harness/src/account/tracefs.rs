//! Where the kernel's tracepoint ids are read: `events/CATEGORY/NAME/id`
//! under tracefs. `perf_event_open` takes a tracepoint by that id, and
//! tracefs is the only place the kernel publishes it (the `tracepoint` PMU
//! under `/sys/bus/event_source/devices/` has no `events/` directory).
//!
//! A fresh machine often has tracefs unmounted (no systemd to mount it), so
//! the places are tried in order, once per process:
//! 1. tracefs already mounted at `/sys/kernel/tracing`, or debugfs at
//!    `/sys/kernel/debug` (which shows tracefs under `tracing/`);
//! 2. as root: `mount -t tracefs nodev /sys/kernel/tracing`;
//! 3. as root: `mount -t debugfs nodev /sys/kernel/debug` (kernels built
//!    without a separate tracefs mount point, or where step 2 is refused).
//!
//! When none works, the reason names every step and its errno, and travels
//! in the measurement as the syscall counts' `n/a` reason.

use std::ffi::CString;
use std::fs;
use std::io;
use std::sync::OnceLock;

/// Where tracefs may be mounted, in the order tried.
pub(super) const TRACEFS: &[&str] = &["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// What locating tracefs needs from the system; a trait so that the order
/// of the fallbacks and the reasons can be tested without mounting.
pub(super) trait System {
    /// Whether `root/events` exists (tracefs is mounted there).
    fn has_events(&self, root: &str) -> bool;
    fn euid(&self) -> u32;
    /// `mount(2)` of a pseudo file system: `mount -t FSTYPE nodev TARGET`.
    fn mount(&mut self, fstype: &str, target: &str) -> io::Result<()>;
}

/// The real system.
struct Live;

impl System for Live {
    fn has_events(&self, root: &str) -> bool {
        fs::metadata(format!("{root}/events")).is_ok()
    }

    fn euid(&self) -> u32 {
        // SAFETY: geteuid has no failure mode and touches no memory.
        unsafe { libc::geteuid() }
    }

    fn mount(&mut self, fstype: &str, target: &str) -> io::Result<()> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
        };
        let (source, fstype_c, target_c) = (c("nodev")?, c(fstype)?, c(target)?);
        // SAFETY: three NUL-terminated strings that outlive the call, no
        // flags, no data: the kernel only reads them.
        let rc = unsafe {
            libc::mount(
                source.as_ptr(),
                target_c.as_ptr(),
                fstype_c.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("mount(-t {fstype} nodev {target}): {e}"),
            ));
        }
        Ok(())
    }
}

/// How tracefs was found.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Found {
    pub root: &'static str,
    /// What the harness mounted to get there (`None`: it was mounted).
    pub mounted: Option<&'static str>,
}

/// Tries the places of the module header in order; `Err` is the reason no
/// tracepoint id can be read, naming what was tried.
pub(super) fn locate(sys: &mut impl System) -> Result<Found, String> {
    if let Some(&root) = TRACEFS.iter().find(|r| sys.has_events(r)) {
        return Ok(Found {
            root,
            mounted: None,
        });
    }
    let euid = sys.euid();
    if euid != 0 {
        return Err(format!(
            "tracefs not mounted at {} and not root (euid {euid}) to mount it: run as root, \
             or mount -t tracefs nodev /sys/kernel/tracing",
            TRACEFS.join(" or ")
        ));
    }
    let mut failures = Vec::new();
    for (fstype, target, root) in [
        ("tracefs", "/sys/kernel/tracing", TRACEFS[0]),
        ("debugfs", "/sys/kernel/debug", TRACEFS[1]),
    ] {
        match sys.mount(fstype, target) {
            Ok(()) if sys.has_events(root) => {
                return Ok(Found {
                    root,
                    mounted: Some(fstype),
                })
            }
            Ok(()) => failures.push(format!(
                "{fstype} mounted at {target} but {root}/events absent"
            )),
            Err(e) => failures.push(e.to_string()),
        }
    }
    Err(format!(
        "tracefs not mounted and the harness could not mount it: {}",
        failures.join("; ")
    ))
}

/// The tracefs root, located once per process (a mount is done once).
pub(super) fn root() -> Result<&'static str, String> {
    static FOUND: OnceLock<Result<Found, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let found = locate(&mut Live);
            if let Ok(Found {
                root,
                mounted: Some(fstype),
            }) = &found
            {
                eprintln!("harness: mounted {fstype} to read tracepoint ids from {root}");
            }
            found
        })
        .clone()
        .map(|f| f.root)
}

/// The id of tracepoint `category:name`; `None` if tracefs cannot be
/// reached (`root()` says why) or this kernel has no such tracepoint.
pub(super) fn tracepoint_id(category: &str, name: &str) -> Option<u64> {
    fs::read_to_string(format!("{}/events/{category}/{name}/id", root().ok()?))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The format file of tracepoint `category:name` (its fields' offsets).
pub(super) fn format(category: &str, name: &str) -> Option<String> {
    fs::read_to_string(format!("{}/events/{category}/{name}/format", root().ok()?)).ok()
}

/// Why `raw_syscalls:sys_enter` has no id: tracefs unreachable (the reason
/// from `root()`), or this kernel traces no syscalls.
pub(super) fn syscalls_reason() -> String {
    match root() {
        Err(reason) => reason,
        Ok(root) => format!(
            "{root}/events has no raw_syscalls:sys_enter (kernel built without \
             CONFIG_FTRACE_SYSCALLS?)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A system where tracefs shows up at `root` once `fstype` is mounted
    /// (or from the start, with `mounted`), and mounts fail as told.
    struct Fake {
        euid: u32,
        mounted: Vec<&'static str>,
        refuse: Vec<(&'static str, i32)>,
        calls: Vec<String>,
    }

    impl Fake {
        fn new(euid: u32) -> Fake {
            Fake {
                euid,
                mounted: Vec::new(),
                refuse: Vec::new(),
                calls: Vec::new(),
            }
        }
    }

    impl System for Fake {
        fn has_events(&self, root: &str) -> bool {
            self.mounted.contains(&root)
        }
        fn euid(&self) -> u32 {
            self.euid
        }
        fn mount(&mut self, fstype: &str, target: &str) -> io::Result<()> {
            self.calls.push(format!("{fstype} {target}"));
            if let Some((_, errno)) = self.refuse.iter().find(|(f, _)| *f == fstype) {
                return Err(io::Error::from_raw_os_error(*errno));
            }
            let root = if fstype == "tracefs" {
                TRACEFS[0]
            } else {
                TRACEFS[1]
            };
            self.mounted.push(root);
            Ok(())
        }
    }

    #[test]
    fn a_mounted_tracefs_is_used_without_mounting() {
        let mut sys = Fake::new(0);
        sys.mounted.push(TRACEFS[1]);
        let found = locate(&mut sys).expect("found");
        assert_eq!(found.root, "/sys/kernel/debug/tracing");
        assert_eq!(found.mounted, None);
        assert!(sys.calls.is_empty(), "{:?}", sys.calls);
    }

    #[test]
    fn root_mounts_tracefs_first() {
        let mut sys = Fake::new(0);
        let found = locate(&mut sys).expect("found");
        assert_eq!(found.root, "/sys/kernel/tracing");
        assert_eq!(found.mounted, Some("tracefs"));
        assert_eq!(sys.calls, vec!["tracefs /sys/kernel/tracing"]);
    }

    #[test]
    fn a_refused_tracefs_mount_falls_back_to_debugfs() {
        let mut sys = Fake::new(0);
        sys.refuse.push(("tracefs", libc::ENODEV));
        let found = locate(&mut sys).expect("found");
        assert_eq!(found.root, "/sys/kernel/debug/tracing");
        assert_eq!(found.mounted, Some("debugfs"));
        assert_eq!(
            sys.calls,
            vec!["tracefs /sys/kernel/tracing", "debugfs /sys/kernel/debug"]
        );
    }

    #[test]
    fn without_root_nothing_is_mounted_and_the_reason_says_so() {
        let mut sys = Fake::new(1000);
        let reason = locate(&mut sys).expect_err("no tracefs");
        assert!(sys.calls.is_empty(), "{:?}", sys.calls);
        assert!(reason.contains("not root (euid 1000)"), "{reason}");
        assert!(reason.contains("mount -t tracefs"), "{reason}");
    }

    #[test]
    fn when_every_mount_fails_the_reason_names_each_errno() {
        let mut sys = Fake::new(0);
        sys.refuse.push(("tracefs", libc::EPERM));
        sys.refuse.push(("debugfs", libc::EBUSY));
        let reason = locate(&mut sys).expect_err("no tracefs");
        let eperm = io::Error::from_raw_os_error(libc::EPERM).to_string();
        let ebusy = io::Error::from_raw_os_error(libc::EBUSY).to_string();
        assert!(
            reason.contains(&eperm) && reason.contains(&ebusy),
            "{reason}"
        );
        assert_eq!(sys.calls.len(), 2);
    }
}
