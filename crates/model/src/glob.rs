//! The one glob matcher: Falco's `glob` operator, profile image selectors and alert filters
//! all match with it, so a pattern means the same everywhere.

/// fnmatch(3) without flags: `*` and `?` match any character including `/`, `[...]` classes
/// with `!`/`^` negation and ranges, `\` escapes.
///
/// Runs on every event a glob condition judges, so it does not allocate when pattern and text
/// are ASCII (paths, names, images nearly always are): it matches their bytes. Otherwise it
/// matches characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    if pattern.is_ascii() && text.is_ascii() {
        return glob(pattern.as_bytes(), text.as_bytes());
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob(&p, &t)
}

/// A unit of a pattern and of its text: a byte of ASCII text, or a character.
trait Sym: Copy + Ord {
    fn is(self, c: u8) -> bool;
}

impl Sym for u8 {
    fn is(self, c: u8) -> bool {
        self == c
    }
}

impl Sym for char {
    fn is(self, c: u8) -> bool {
        self == c as char
    }
}

fn glob<T: Sym>(p: &[T], t: &[T]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            let c = p[pi];
            if c.is(b'*') {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            if c.is(b'?') {
                pi += 1;
                ti += 1;
                continue;
            }
            if c.is(b'[') {
                if let Some((true, next)) = class_match(p, pi, t[ti]) {
                    pi = next;
                    ti += 1;
                    continue;
                }
            } else if c.is(b'\\') && pi + 1 < p.len() && p[pi + 1] == t[ti] {
                pi += 2;
                ti += 1;
                continue;
            } else if c == t[ti] {
                pi += 1;
                ti += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi].is(b'*') {
        pi += 1;
    }
    pi == p.len()
}

/// Matches `c` against the class starting at `p[start] == '['`: (matched, index after `]`).
fn class_match<T: Sym>(p: &[T], start: usize, c: T) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i).is_some_and(|s| s.is(b'!') || s.is(b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i].is(b']') && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1].is(b'-') && !p[i + 2].is(b']') {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*", "a"));
        assert!(glob_match("*../*../*", "/var/www/../../etc/shadow"));
        assert!(!glob_match("*../*../*", "/var/www/../etc/shadow"));
        // `*` crosses `/`, as fnmatch(3) without FNM_PATHNAME.
        assert!(glob_match("docker.io/*", "docker.io/acme/app:1"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("abc", "abcd"));
    }

    #[test]
    fn classes_and_escapes() {
        assert!(glob_match("[a-c]x", "bx"));
        assert!(!glob_match("[!a-c]x", "bx"));
        assert!(glob_match("[^a-c]x", "dx"));
        assert!(glob_match("[]]", "]"));
        assert!(glob_match("\\*", "*"));
        assert!(!glob_match("\\*", "a"));
        // An unterminated class matches nothing rather than being literal.
        assert!(!glob_match("[ab", "a"));
    }

    #[test]
    fn bytes_and_characters_agree_on_ascii() {
        // Every pattern over a small alphabet of metacharacters against every short text: the
        // byte matcher (ASCII) and the character matcher give the same answer.
        let alphabet = ['a', 'b', '*', '?', '[', ']', '!', '-', '\\'];
        let texts = [
            "", "a", "b", "ab", "ba", "a*", "[", "]", "-", "\\", "a\\b", "aab",
        ];
        let mut pats = vec![String::new()];
        for _ in 0..4 {
            let next: Vec<String> = pats
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            pats.extend(next);
            pats.sort();
            pats.dedup();
        }
        for p in &pats {
            let pc: Vec<char> = p.chars().collect();
            for t in texts {
                let tc: Vec<char> = t.chars().collect();
                assert_eq!(
                    glob(p.as_bytes(), t.as_bytes()),
                    glob(&pc, &tc),
                    "{p:?} {t:?}"
                );
            }
        }
    }

    #[test]
    fn characters_beyond_ascii_are_one_unit() {
        // `?` is one character, not one byte, whichever side is not ASCII.
        assert!(glob_match("caf?", "café"));
        assert!(glob_match("?", "é"));
        assert!(!glob_match("??", "é"));
        assert!(glob_match("[à-ê]t?", "ét?"));
        assert!(glob_match("*é*", "/tmp/café/x"));
        assert!(!glob_match("*é*", "/tmp/cafe/x"));
    }
}
