//! Example Wasmfleet guest: greets on stdout every interval. Its flags exist so the tests can
//! exercise exits, traps, memory limits and hostile behaviour (output floods, terminal escape
//! sequences, busy loops) with one module.

use std::time::Duration;

struct Opts {
    interval: Duration,
    count: Option<u64>,
    exit_code: i32,
    trap: bool,
    alloc: usize,
    flood: usize,
    escapes: bool,
    spin: bool,
}

fn parse_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    s.strip_suffix('s')?.parse().ok().map(Duration::from_secs)
}

fn parse_bytes(s: &str) -> Option<usize> {
    let (num, mult) = match s {
        _ if s.ends_with("Ki") => (&s[..s.len() - 2], 1 << 10),
        _ if s.ends_with("Mi") => (&s[..s.len() - 2], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mult)
}

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        interval: Duration::from_secs(1),
        count: None,
        exit_code: 0,
        trap: false,
        alloc: 0,
        flood: 0,
        escapes: false,
        spin: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--interval" => opts.interval = parse_duration(&value()?).ok_or("bad --interval")?,
            "--count" => opts.count = Some(value()?.parse().map_err(|_| "bad --count")?),
            "--exit-code" => opts.exit_code = value()?.parse().map_err(|_| "bad --exit-code")?,
            "--alloc" => opts.alloc = parse_bytes(&value()?).ok_or("bad --alloc")?,
            "--trap" => opts.trap = true,
            "--flood" => opts.flood = parse_bytes(&value()?).ok_or("bad --flood")?,
            "--escapes" => opts.escapes = true,
            "--spin" => opts.spin = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn main() {
    let opts = parse_args().unwrap_or_else(|e| {
        eprintln!("hello: {e}");
        std::process::exit(2)
    });
    let var = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let (greeting, workload, node) = (
        var("GREETING", "hello"),
        var("WASMFLEET_WORKLOAD", "?"),
        var("WASMFLEET_NODE", "?"),
    );
    eprintln!(
        "hello: starting {workload} on {node} (interval {:?}, count {:?})",
        opts.interval, opts.count
    );
    if opts.trap {
        panic!("hello: --trap asked for a trap");
    }
    if opts.alloc > 0 {
        let mut block = vec![0u8; opts.alloc];
        for i in (0..block.len()).step_by(4096) {
            block[i] = 1;
        }
        eprintln!(
            "hello: allocated {} bytes",
            std::hint::black_box(&block).len()
        );
    }
    if opts.flood > 0 {
        // Lines of `flood` bytes, as fast as the host takes them, forever.
        let line = "x".repeat(opts.flood.saturating_sub(12));
        for n in 0u64..=u64::MAX {
            println!("{n:>10} {line}");
        }
    }
    if opts.escapes {
        // Retitle the terminal, clear it, move the cursor home, and a C1 control.
        println!("\x1b]0;pwned\x07\x1b[2J\x1b[Hescaped \u{9b}31m");
    }
    if opts.spin {
        println!("{greeting} from {workload} on {node}: spinning");
        let mut x = 0u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    let mut i = 0u64;
    while opts.count.is_none_or(|n| i < n) {
        i += 1;
        println!("{greeting} from {workload} on {node} #{i}");
        if opts.count != Some(i) {
            std::thread::sleep(opts.interval);
        }
    }
    std::process::exit(opts.exit_code);
}
