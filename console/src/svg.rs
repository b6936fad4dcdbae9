//! A lineage graph drawn as SVG on the server: nodes in columns by depth,
//! each a link, edges as curves from parent to child. Colours come from the
//! stylesheet (classes), so the page needs no inline styles.

use std::fmt::Write;

/// A node of the graph.
#[derive(Clone, Debug)]
pub struct Node {
    /// Column (0 = the artifact itself).
    pub level: usize,
    /// `model`, `run`, `checkpoint`, `pipeline`, `plugin`, `dataset`.
    pub kind: &'static str,
    /// First line.
    pub title: String,
    /// Further lines (at most three are drawn).
    pub lines: Vec<String>,
    /// Where it links to.
    pub href: Option<String>,
    /// Whether it verified (drawn as refused otherwise).
    pub ok: bool,
}

const W: usize = 300;
const H: usize = 78;
const COL: usize = 340;
const ROW: usize = 96;
const PAD: usize = 12;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Draws `nodes` with `edges` (parent index, child index).
pub fn draw(nodes: &[Node], edges: &[(usize, usize)]) -> String {
    let levels = nodes.iter().map(|n| n.level).max().map_or(1, |m| m + 1);
    let mut row_of = vec![0usize; nodes.len()];
    let mut count = vec![0usize; levels];
    for (i, n) in nodes.iter().enumerate() {
        row_of[i] = count[n.level];
        count[n.level] += 1;
    }
    let rows = count.iter().copied().max().unwrap_or(1);
    let (width, height) = (
        PAD * 2 + (levels - 1) * COL + W,
        PAD * 2 + rows * ROW - (ROW - H),
    );
    // Centre shorter columns vertically.
    let pos = |i: usize| {
        let n = &nodes[i];
        let offset = (rows - count[n.level]) * ROW / 2;
        (PAD + n.level * COL, PAD + offset + row_of[i] * ROW)
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="lineage" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="group" aria-label="Lineage graph">"#
    );
    for &(a, b) in edges {
        let ((ax, ay), (bx, by)) = (pos(a), pos(b));
        let (x1, y1, x2, y2) = (ax + W, ay + H / 2, bx, by + H / 2);
        let mid = (x1 + x2) / 2;
        let _ = write!(
            s,
            r#"<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"/>"#
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let state = if n.ok { "ok" } else { "bad" };
        if let Some(h) = &n.href {
            let _ = write!(s, r#"<a href="{}" class="node-link">"#, esc(h));
        }
        let _ = write!(
            s,
            r#"<g class="node node-{} {state}" data-kind="{}"><title>{}</title><rect x="{x}" y="{y}" width="{W}" height="{H}" rx="8"/>"#,
            n.kind,
            n.kind,
            esc(&std::iter::once(n.title.as_str())
                .chain(n.lines.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join("\n"))
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" class="node-kind">{}</text><text x="{}" y="{}" class="node-title">{}</text>"#,
            x + 10,
            y + 16,
            esc(n.kind),
            x + 10,
            y + 34,
            esc(&clip(&n.title, 40))
        );
        for (k, line) in n.lines.iter().take(2).enumerate() {
            let _ = write!(
                s,
                r#"<text x="{}" y="{}" class="node-line">{}</text>"#,
                x + 10,
                y + 52 + k * 16,
                esc(&clip(line, 46))
            );
        }
        s.push_str("</g>");
        if n.href.is_some() {
            s.push_str("</a>");
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_linked_escaped_nodes_and_edges() {
        let node = |level, title: &str, href: Option<&str>| Node {
            level,
            kind: "plugin",
            title: title.into(),
            lines: vec!["<b>".into()],
            href: href.map(String::from),
            ok: true,
        };
        let svg = draw(
            &[
                node(0, "a", Some("/x?a=1&b=2")),
                node(1, "b", None),
                node(1, "c", None),
            ],
            &[(0, 1), (0, 2)],
        );
        assert_eq!(svg.matches("<path").count(), 2);
        assert_eq!(svg.matches("<a ").count(), 1);
        assert!(svg.contains(r#"href="/x?a=1&amp;b=2""#), "{svg}");
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b>"));
    }
}
