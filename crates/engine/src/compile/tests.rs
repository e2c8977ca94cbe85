//! Matcher compilation and evaluation tests.

use super::*;

#[test]
fn globs() {
    assert!(glob_match("*../*../*", "/var/www/../../etc/shadow"));
    assert!(!glob_match("*../*../*", "/var/www/../etc/shadow"));
    assert!(glob_match("/home/*/.ssh/*", "/home/bob/.ssh/id_rsa"));
    assert!(glob_match("a?c", "abc"));
    assert!(glob_match("[a-c]x", "bx"));
    assert!(!glob_match("[!a-c]x", "bx"));
    assert!(glob_match("\\*", "*"));
    assert!(!glob_match("\\*", "a"));
    assert!(glob_match("*", ""));
}

#[test]
fn path_trie() {
    let mut t = PathTrie::default();
    t.insert("/tmp/hello");
    t.insert("/var/*/log");
    assert!(t.matches("/tmp/hello"));
    assert!(t.matches("/tmp/hello/world"));
    assert!(!t.matches("/tmp/hello_world"));
    assert!(!t.matches("/tmp"));
    assert!(t.matches("/var/app/log/x"));
    assert!(!t.matches("/var/app/logs"));
    // Empty components are skipped, as the kernel resolves `//` and a trailing `/`.
    assert!(t.matches("//tmp//hello/"));
    assert!(t.matches("tmp/hello/x"));
    assert!(!t.matches("/tmp/"));
    assert!(!t.matches(""));
    // Siblings inserted out of order are found (children are searched by halves).
    let mut t = PathTrie::default();
    for p in ["/srv/b", "/srv/a", "/etc/x", "/srv/c/d", "/boot", "/srv/a"] {
        t.insert(p);
    }
    for p in [
        "/srv/a",
        "/srv/b/1",
        "/srv/c/d/e",
        "/etc/x",
        "/boot/vmlinuz",
    ] {
        assert!(t.matches(p), "{p}");
    }
    for p in ["/srv/c", "/srv/aa", "/srv", "/etc/y", "/bin"] {
        assert!(!t.matches(p), "{p}");
    }
    let firsts: Vec<&str> = t.first_components().expect("no glob, no root").collect();
    assert_eq!(firsts, ["boot", "etc", "srv"]);
    // What every match passes through: each entry, or its part before a glob; an entry
    // below another is covered by it.
    let mut t = PathTrie::default();
    for p in [
        "/srv/b",
        "//srv//a/",
        "/srv/a/deeper",
        "/k/pods/*/vol",
        "/k/pods/x",
        "/etc",
    ] {
        t.insert(p);
    }
    assert_eq!(
        t.prefixes().expect("no glob first, no root"),
        ["etc", "k/pods", "srv/a", "srv/b"]
    );
    let mut root = PathTrie::default();
    root.insert("/");
    assert!(root.matches("/anything"));
    assert_eq!(root.prefixes(), None);
    let mut glob = PathTrie::default();
    glob.insert("/*/shadow");
    assert_eq!(glob.prefixes(), None);
}

#[test]
fn nets() {
    let n = IpNet::parse("10.0.0.0/8").unwrap();
    assert!(n.contains("10.1.2.3".parse().unwrap()));
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    assert!(
        IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("1.2.3.4".parse().unwrap())
    );
    assert!(
        IpNet::parse("::1")
            .unwrap()
            .contains("::1".parse().unwrap())
    );
    assert!(IpNet::parse("10.0.0.0/33").is_none());
}

#[test]
fn transformers() {
    use std::borrow::Cow;
    let v = || Val::Str(Cow::Borrowed("/usr/Bin/Bash"));
    assert_eq!(transform(Transformer::ToLower, v()).text(), "/usr/bin/bash");
    assert_eq!(transform(Transformer::ToUpper, v()).text(), "/USR/BIN/BASH");
    assert_eq!(transform(Transformer::Basename, v()).text(), "Bash");
    assert_eq!(transform(Transformer::Len, v()), Val::Num(13));
    assert_eq!(
        transform(Transformer::B64, Val::Str(Cow::Borrowed("aGVsbG8="))).text(),
        "hello"
    );
}
