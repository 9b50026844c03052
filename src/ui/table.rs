//! Plain text tables with left-aligned columns, as `docker compose` prints them.

/// Renders rows under a header; columns are as wide as their widest cell plus padding.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let fill = widths.get(i).copied().unwrap_or(0) - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', fill));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligns_columns() {
        let out = super::render(
            &["NAME", "VALUE"],
            &[
                vec!["A".into(), "1".into()],
                vec!["LONGER".into(), "".into()],
            ],
        );
        assert_eq!(out, "NAME     VALUE\nA        1\nLONGER\n");
    }
}
