//! Plain-text tables and ages, the way kubectl prints them.

use super::sanitize::visible;

/// Prints rows under a header, columns padded to their widest cell, separated by 3 spaces.
/// Cells hold text from the fleet: control characters are escaped (see [`visible`]).
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| visible(c).into_owned()).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}   ", width = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// A short age such as `42s`, `5m`, `3h`, `2d`.
pub fn age(since_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(since_ms) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7_200 => format!("{}m", s / 60),
        7_200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_and_trims_the_last() {
        let t = render(
            &["NAME", "STATUS"],
            &[
                vec!["a-long-name".into(), "Ready".into()],
                vec!["b".into(), "NotReady".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME          STATUS\na-long-name   Ready\nb             NotReady\n"
        );
    }

    #[test]
    fn cells_cannot_break_the_table_or_the_terminal() {
        let t = render(&["MESSAGE"], &[vec!["trap\n\x1b[2Jfake row".into()]]);
        assert_eq!(t, "MESSAGE\ntrap\\n\\x1b[2Jfake row\n");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(0, 59_000), "59s");
        assert_eq!(age(0, 600_000), "10m");
        assert_eq!(age(0, 3 * 3_600_000), "3h");
        assert_eq!(age(0, 3 * 86_400_000), "3d");
        assert_eq!(age(10, 0), "0s");
    }
}
