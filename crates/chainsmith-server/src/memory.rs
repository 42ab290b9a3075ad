//! Memory a long-running local cloud gives back once it serves.
//!
//! Starting a server runs code that serving never runs again: argument parsing (clap builds the
//! whole CLI), reading the workspace, issuing the server's certificate. And the kernel maps a
//! program's cached file pages in batches of up to 64 KiB around each page touched
//! (fault-around). That left ~9 MB of the chainsmith binary's code and ~2 MB of its read-only
//! data resident, and counted in an idle server's RSS, against Mosquitto's ~8 MB of code in
//! all (issue 25).
//!
//! [`page_out_startup_code`], called once the server listens, asks the kernel to reclaim the
//! program's resident code and read-only data (`madvise(MADV_PAGEOUT)`, Linux 5.4+).
//!
//! Why the RSS it leaves is honest: these are clean pages read from the program's file, never
//! written, so reclaiming them loses nothing and writes nothing back. A page the server runs
//! again (the TLS handshake, MQTT, the registry) is mapped back on first use and counted again,
//! so the RSS of a server under load (`cargo bench --bench hub`, "RSS with all connected") is
//! measured with the code it runs back in place, not before the work. The kernel skips pages
//! other processes map (a TUI running the same file keeps its own), and the file pages of a
//! program the user may not write (a root-owned install run by a user: nothing changes then).

use std::io;
use std::path::Path;

/// What [`page_out_startup_code`] asked the kernel to reclaim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PagedOut {
    /// Read-only mappings of the program's file given to the kernel.
    pub mappings: usize,
    /// Their size in bytes (mapped, not necessarily resident before).
    pub bytes: usize,
}

/// Give back the resident pages of this program's own code and read-only data (see the
/// module's documentation): call it once, after the server listens. Memory other than the
/// program's file (the heap, stacks, shared libraries) is not touched. An error says which
/// step failed (reading `/proc/self/maps`, or the kernel refusing the advice, as a kernel
/// before 5.4 does); the server runs on either way.
pub fn page_out_startup_code() -> io::Result<PagedOut> {
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::read_link("/proc/self/exe")?;
    let inode = std::fs::metadata("/proc/self/exe")?.ino();
    let maps = std::fs::read_to_string("/proc/self/maps")?;
    let mut done = PagedOut::default();
    for (start, end) in read_only_mappings_of(&maps, &exe, inode) {
        page_out(start, end - start)?;
        done.mappings += 1;
        done.bytes += end - start;
    }
    Ok(done)
}

/// The address ranges of `/proc/self/maps` lines (`start-end perms offset dev inode path`)
/// that map the file `exe` (its inode `inode`: a file of that name replaced since, by a new
/// build, is another) without write permission: its code (`r-xp`) and read-only data (`r--p`).
fn read_only_mappings_of(maps: &str, exe: &Path, inode: u64) -> Vec<(usize, usize)> {
    let deleted = |p: &str| p.strip_suffix(" (deleted)").unwrap_or(p).to_string();
    let exe = deleted(&exe.to_string_lossy());
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let ino: u64 = fields.nth(2)?.parse().ok()?;
            // The path, after padding spaces.
            let path = deleted(fields.next()?.trim_start());
            if path != exe || ino != inode || perms.contains('w') || !perms.starts_with('r') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// `madvise(start, len, MADV_PAGEOUT)`.
#[allow(unsafe_code)]
fn page_out(start: usize, len: usize) -> io::Result<()> {
    // SAFETY: `start..start + len` is a whole mapping of this process, read from
    // /proc/self/maps and never unmapped (the program's own file). MADV_PAGEOUT only reclaims:
    // it never changes what the memory holds (unlike MADV_DONTNEED or MADV_FREE), so no
    // reference into the range, and no code running from it, sees a difference but a page fault.
    let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_programs_read_only_mappings_are_chosen() {
        let maps = "\
5581a0000000-5581a0200000 r--p 00000000 fd:00 123  /opt/bin/chainsmith
5581a0200000-5581a1300000 r-xp 00200000 fd:00 123  /opt/bin/chainsmith
5581a1300000-5581a1360000 r--p 01300000 fd:00 123  /opt/bin/chainsmith
5581a1360000-5581a1370000 rw-p 01360000 fd:00 123  /opt/bin/chainsmith
5581a2000000-5581a2100000 rw-p 00000000 00:00 0    [heap]
7f0000000000-7f0000100000 r-xp 00000000 fd:00 456  /usr/lib/libc.so.6
7f0000200000-7f0000300000 r-xp 00000000 fd:00 789  /opt/bin/chainsmith-old
7f0000400000-7f0000500000 r-xp 00000000 fd:00 124  /opt/bin/chainsmith (deleted)
";
        let got = read_only_mappings_of(maps, Path::new("/opt/bin/chainsmith"), 123);
        assert_eq!(
            got,
            vec![
                (0x5581a0000000, 0x5581a0200000),
                (0x5581a0200000, 0x5581a1300000),
                (0x5581a1300000, 0x5581a1360000),
            ]
        );
        // A program replaced by a new build while it runs: the old file, its own inode.
        let old = read_only_mappings_of(maps, Path::new("/opt/bin/chainsmith (deleted)"), 124);
        assert_eq!(old, vec![(0x7f0000400000, 0x7f0000500000)]);
    }

    /// The resident kB of this process's own program file, from `/proc/self/smaps`.
    fn own_file_rss_kb() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let exe = exe.to_string_lossy().to_string();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let (mut ours, mut kb) = (false, 0);
        for line in smaps.lines() {
            if let Some(rss) = line.strip_prefix("Rss:") {
                if ours {
                    kb += rss.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
                }
            } else if line.split(' ').next().is_some_and(|f| f.contains('-')) {
                ours = line.ends_with(&exe);
            }
        }
        kb
    }

    #[test]
    fn paging_out_gives_back_the_programs_pages_and_it_runs_on() {
        // A test binary linked a moment ago (as in CI) may still be dirty in the page cache,
        // and the kernel does not reclaim a dirty file page without writing it back first:
        // write it back, so the test sees what an installed program gets.
        std::fs::File::open("/proc/self/exe")
            .and_then(|f| f.sync_all())
            .expect("writing back the test binary");
        let before = own_file_rss_kb();
        let done = page_out_startup_code().expect("MADV_PAGEOUT on Linux 5.4+");
        let after = own_file_rss_kb();
        assert!(done.mappings >= 2, "{done:?}");
        // Without the call the program's resident pages only grow. With it, what the test runs
        // afterwards comes back and the kernel keeps pages it cannot take at once (a test
        // binary's are ~1 MB here however often it is asked), so the test asks for a drop
        // of at least 128 kB rather than a ratio (runs here gave back 270-800 kB of 1.6-1.8 MB).
        assert!(
            after + 128 <= before,
            "{before} kB resident before, {after} kB after"
        );
        // The code just paged out runs again, read back from the file.
        let again = page_out_startup_code().expect("twice");
        assert_eq!(again.mappings, done.mappings);
    }
}
