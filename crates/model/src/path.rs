//! Paths as the agent shows them.

/// Normalizes an absolute path lexically: `.` and `..` components and repeated slashes go.
pub fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    normalize_into(&mut out, &[path]);
    out
}

/// [`normalize`] of `parts` joined by `/`, written into `out` (cleared first): the decoder
/// reuses one string per event this way instead of allocating two.
pub fn normalize_into(out: &mut String, parts: &[&str]) {
    out.clear();
    for c in parts.iter().flat_map(|p| p.split('/')) {
        match c {
            "" | "." => {}
            // `..` of the root is the root.
            ".." => out.truncate(out.rfind('/').unwrap_or(0)),
            c => {
                out.push('/');
                out.push_str(c);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_slashes_and_joins() {
        for (parts, want) in [
            (&["/tmp/../tmp/./x"][..], "/tmp/x"),
            (&["//etc///shadow"], "/etc/shadow"),
            (&["/../../etc"], "/etc"),
            (&["/a/b/.."], "/a"),
            (&["/"], "/"),
            (&[""], "/"),
            (&["/home/u", "../../etc/./shadow"], "/etc/shadow"),
            (&["/proc/1/cwd", "x"], "/proc/1/cwd/x"),
        ] {
            let mut out = String::from("stale");
            normalize_into(&mut out, parts);
            assert_eq!(out, want, "{parts:?}");
            assert_eq!(normalize(&parts.join("/")), want, "{parts:?}");
        }
    }
}
