//! Process resources a hub with thousands of nodes manages itself: open files, and freed
//! memory handed back to the system.

/// Raises the open-file soft limit to the hard limit and returns the limit now in force.
///
/// Every node connected to the embedded broker is an open socket, and the usual soft limit
/// (1,024) would refuse the thousand-and-first node. The hard limit (set by the
/// administrator: `ulimit -Hn`, systemd's `LimitNOFILE`) is what the hub may use.
pub fn raise_open_files() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// Hands memory the hub has freed back to the system, and returns whether it could.
///
/// A connect storm, a snapshot rebuild or a `get nodes` of a large fleet allocate and free
/// megabytes; glibc keeps most freed pages in its per-thread arenas, so without this the
/// hub's RSS stays at its peak: 16.9 KiB per node after 5,000 nodes connected, 9.6 KiB after
/// a trim (BENCHMARKS.md). Other C libraries (musl) return memory on their own.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers; it only walks the allocator's free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Allocations from this size up get pages of their own (`mmap`), returned whole when freed.
pub const LARGE_ALLOCATION: usize = 128 * 1024;

/// Keeps large allocations out of glibc's arenas, for good.
///
/// glibc maps allocations of 128 KiB and more on their own pages, but raises that threshold to
/// the size of any such block freed (up to 32 MiB), so that later large buffers come from the
/// arenas instead. A hub's large buffers are transient (a listing of every node, a batch of a
/// connect storm, publications of an apply), and in the arenas they fragment the heap the
/// long-lived per-node records live in: pages that a freed buffer shares with a record stay
/// resident. Fixing the threshold stops the raise. Resident memory at 50,000 idle nodes:
/// 146–176 → 116–130 MiB (`BENCHMARKS.md`). Returns whether the allocator took the setting.
pub fn keep_large_allocations_out_of_the_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let bytes = libc::c_int::try_from(LARGE_ALLOCATION).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers and changes only the allocator's parameters.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, bytes) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        let now = super::raise_open_files();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct passed.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!((now, lim.rlim_cur), (lim.rlim_max, lim.rlim_max));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_goes_back_to_the_system() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
            line.split_whitespace().nth(1).unwrap().parse().unwrap()
        }
        // Small blocks (below the mmap threshold, so they live in an arena), touched, and
        // 15 of every 16 freed: the survivors pin the freed runs in the middle of the arena,
        // where glibc keeps them until trimmed.
        let mut blocks: Vec<Vec<u8>> = (0..16_384).map(|_| vec![1u8; 4096]).collect();
        let full = rss_kib();
        let mut i = 0;
        blocks.retain(|_| {
            i += 1;
            i % 16 == 0
        });
        let kept = rss_kib();
        assert!(super::release_free_memory(), "something was freed");
        let trimmed = rss_kib();
        assert!(
            trimmed + 32 * 1024 < kept,
            "60 MiB freed, RSS {full} KiB, {kept} KiB after the frees, {trimmed} KiB trimmed"
        );
        drop(blocks);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn a_large_buffer_freed_does_not_pull_later_ones_into_the_heap() {
        use std::hint::black_box;

        // glibc serves a large request from a free chunk of the thread's arena if one is big
        // enough, mapping pages only when none is: the check needs arenas that no other test
        // has used, so it runs in a process of its own (this test binary, this test alone).
        const ALONE: &str = "WASMFLEET_TEST_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "limits::tests::a_large_buffer_freed_does_not_pull_later_ones_into_the_heap",
                    "--test-threads",
                    "1",
                ])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{said}");
            assert!(said.contains("1 passed"), "the test ran: {said}");
            return;
        }
        assert!(super::keep_large_allocations_out_of_the_heap());
        // SAFETY: mallinfo2 only reads the allocator's counters.
        let mapped = || unsafe { libc::mallinfo2() }.hblks;
        // A freed 8 MiB block would raise glibc's own threshold to 8 MiB...
        drop(black_box(vec![1u8; 8 << 20]));
        let before = mapped();
        // ...and this buffer would then come from the arena.
        let buffer = black_box(vec![1u8; 2 * super::LARGE_ALLOCATION]);
        assert_eq!(mapped(), before + 1, "a large buffer came from the arena");
        drop(buffer);
    }
}
