//! Catalog and resolution tests.

use super::*;

#[test]
fn every_catalog_name_resolves_and_is_unique() {
    let mut seen = std::collections::HashSet::new();
    for d in CATALOG {
        assert!(seen.insert(d.name), "duplicate {}", d.name);
        let arg = match d.arg {
            ArgSpec::Name => Some("flags"),
            ArgSpec::Key => Some("K"),
            _ => None,
        };
        resolve(d.name, arg).unwrap();
    }
}

#[test]
fn resolves_arguments() {
    let r = resolve("evt.arg.target", None).unwrap();
    assert_eq!(r.name(), "evt.arg");
    assert!(matches!(&r.arg, FieldArg::Name(n, a) if &**n == "target" && a.contains(&"oldname")));
    assert_eq!(
        resolve("evt.arg", Some("0")).unwrap().arg,
        FieldArg::Index(0)
    );
    assert_eq!(
        resolve("proc.aname", Some("2")).unwrap().arg,
        FieldArg::Index(2)
    );
    assert!(resolve("proc.aname", None).unwrap().is_any_ancestor());
    assert!(resolve("proc.aname", Some("x")).is_err());
    assert!(resolve("proc.name", Some("1")).is_err());
    assert_eq!(
        resolve("proc.nobody", None).unwrap_err(),
        "filter_check called with nonexistent field proc.nobody"
    );
}
