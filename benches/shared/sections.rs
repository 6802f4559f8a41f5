//! BENCHMARKS.md is shared by the bench binaries: each owns the section between its own markers
//! (`<!-- NAME:start -->` … `<!-- NAME:end -->`) and leaves the others as they are.

/// `old` with the section between `start` and `end` replaced by `section` (which carries the markers),
/// or with `section` appended when `old` has none.
pub fn replace_section(old: &str, start: &str, end: &str, section: &str) -> String {
    match (old.find(start), old.find(end)) {
        (Some(a), Some(b)) if b > a => {
            let after = &old[b + end.len()..];
            format!("{}{}{}", &old[..a], section.trim_end(), after)
        }
        _ if old.is_empty() => format!("# Benchmarks\n\n{section}"),
        _ => format!("{}\n\n{section}", old.trim_end()),
    }
}
