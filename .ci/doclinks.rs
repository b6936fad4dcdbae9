//! Checks the relative links of the project's Markdown: every `[text](path)` in
//! README.md, docs/ and sdk/ names a file or directory that exists, and every
//! `#anchor` into a Markdown file names one of its headings (GitHub's slugs).
//!
//! std only, so CI builds it with rustc alone:
//! `rustc --edition 2024 -o doclinks .ci/doclinks.rs && ./doclinks` from the root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut files = vec![PathBuf::from("README.md")];
    for dir in ["docs", "sdk"] {
        markdown_under(Path::new(dir), &mut files);
    }
    let mut broken = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (line, target) in links(&text) {
            if let Err(why) = check(file, &target) {
                eprintln!("{}:{line}: `{target}`: {why}", file.display());
                broken += 1;
            }
        }
    }
    if broken > 0 {
        eprintln!("{broken} broken links");
        return ExitCode::FAILURE;
    }
    println!(
        "{} Markdown files, every relative link resolves",
        files.len()
    );
    ExitCode::SUCCESS
}

/// The `.md` files under `dir`, leaving out build output and dependencies.
fn markdown_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() && !matches!(name, "node_modules" | "target" | "out") {
            markdown_under(&path, out);
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// Each link target outside code blocks and code spans, with its line number.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut in_code = false;
        let bytes = line.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'`' => in_code = !in_code,
                b']' if !in_code && bytes.get(at + 1) == Some(&b'(') => {
                    if let Some(len) = line[at + 2..].find(')') {
                        out.push((i + 1, line[at + 2..at + 2 + len].to_string()));
                        at += 2 + len;
                    }
                }
                _ => {}
            }
            at += 1;
        }
    }
    out
}

fn check(file: &Path, target: &str) -> Result<(), String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(());
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new("")).join(path)
    };
    if !resolved.exists() {
        return Err(format!("{} does not exist", resolved.display()));
    }
    let Some(anchor) = anchor else {
        return Ok(());
    };
    if resolved.extension().is_none_or(|e| e != "md") {
        return Ok(());
    }
    let text = std::fs::read_to_string(&resolved).map_err(|e| e.to_string())?;
    if headings(&text).contains(anchor) {
        Ok(())
    } else {
        Err(format!("{} has no heading `#{anchor}`", resolved.display()))
    }
}

/// The anchors GitHub gives a file's headings: lower case, letters, digits,
/// `-` and `_` kept, spaces made `-`, the rest dropped; repeats get `-1`, `-2`.
fn headings(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let title = line.trim_start_matches('#');
        if fenced || title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}
