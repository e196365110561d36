//! Broker CPU accounting for `--pid`: the user+system CPU time of one or more processes, read
//! from `/proc/PID/stat` (fields 14 and 15, `utime` and `stime`, in clock ticks).

use anyhow::{Context, Result, bail};

/// Clock ticks per second of `/proc/PID/stat` times. Linux reports them in `USER_HZ`, which is
/// 100 on every architecture it exports to userspace (`sysconf(_SC_CLK_TCK)`), so no libc call
/// (and no `unsafe`) is needed for it.
const USER_HZ: u64 = 100;

/// Parses `--pid PID[,PID...]`.
///
/// # Errors
/// An empty list or a non-numeric id.
pub fn parse_pids(s: &str) -> Result<Vec<u32>, String> {
    let pids: Result<Vec<u32>, _> = s.split(',').map(|p| p.trim().parse::<u32>()).collect();
    match pids {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(format!("expected PID[,PID...], got {s:?}")),
    }
}

/// CPU time (user + system) used so far by `pid`, microseconds.
///
/// # Errors
/// The process does not exist or its stat line is malformed.
pub fn cpu_us(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    parse_stat(&stat).with_context(|| format!("malformed {path}"))
}

/// Total CPU time of every process in `pids`, microseconds.
///
/// # Errors
/// As [`cpu_us`].
pub fn total_cpu_us(pids: &[u32]) -> Result<u64> {
    pids.iter().map(|&p| cpu_us(p)).sum()
}

/// `utime + stime` of a `/proc/PID/stat` line, microseconds. The command name (field 2) is in
/// parentheses and may itself contain spaces or parentheses, so fields are counted after the
/// last `)`.
fn parse_stat(stat: &str) -> Result<u64> {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        bail!("no ')' after the command name");
    };
    // rest starts with field 3 (state); utime and stime are fields 14 and 15.
    let mut fields = rest.split_whitespace().skip(11);
    let mut tick = || -> Result<u64> {
        fields
            .next()
            .context("too few fields")?
            .parse::<u64>()
            .context("non-numeric CPU time")
    };
    let ticks = tick()? + tick()?;
    Ok(ticks * 1_000_000 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_fields_14_and_15_after_the_name() -> Result<()> {
        let line = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 5 0 1 2 3";
        assert_eq!(parse_stat(line)?, 2_800_000);
        assert!(parse_stat("42 no parens").is_err());
        assert!(parse_stat("42 (x) S 1 2").is_err());
        Ok(())
    }

    #[test]
    fn own_cpu_time_is_readable_and_pids_parse() -> Result<()> {
        let me = std::process::id();
        total_cpu_us(&[me, me])?;
        assert_eq!(parse_pids("1, 2,3"), Ok(vec![1, 2, 3]));
        assert!(parse_pids("1,x").is_err());
        assert!(parse_pids("").is_err());
        Ok(())
    }
}
