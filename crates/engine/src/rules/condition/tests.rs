//! Condition parser tests.

use super::*;

fn check(e: &Expr) -> &Check {
    match e {
        Expr::Check(c) => c,
        other => panic!("not a check: {other:?}"),
    }
}

#[test]
fn precedence_and_binds_tighter_than_or() {
    let e = parse("a or b and c").unwrap();
    let Expr::Or(items) = e else { panic!() };
    assert!(matches!(items[0], Expr::Ident { .. }));
    assert!(matches!(&items[1], Expr::And(v) if v.len() == 2));
}

#[test]
fn not_forms() {
    assert!(matches!(parse("not a").unwrap(), Expr::Not(_)));
    assert!(matches!(parse("not(a)").unwrap(), Expr::Not(_)));
    assert!(matches!(parse("not not a").unwrap(), Expr::Not(b) if matches!(*b, Expr::Not(_))));
    // A macro whose name starts with "not" is a macro.
    assert!(matches!(parse("nothing").unwrap(), Expr::Ident { name, .. } if name == "nothing"));
}

#[test]
fn operators_and_values() {
    let e = parse("proc.name!=\"sshd\"").unwrap();
    let c = check(&e);
    assert_eq!(c.op, Op::Ne);
    assert!(matches!(&c.rhs, Rhs::Value(v) if v.text == "sshd" && v.quoted));

    let e = parse("fd.name startswith /etc/").unwrap();
    assert!(matches!(&check(&e).rhs, Rhs::Value(v) if v.text == "/etc/" && !v.quoted));

    let e = parse("fd.num>=0").unwrap();
    assert_eq!(check(&e).op, Op::Ge);

    let e = parse("proc.pname exists").unwrap();
    assert_eq!(check(&e).op, Op::Exists);

    for (src, op) in [
        ("a.b contains x", Op::Contains),
        ("a.b icontains x", Op::IContains),
        ("a.b bcontains 414243", Op::BContains),
        ("a.b bstartswith 41", Op::BStartsWith),
        ("a.b endswith x", Op::EndsWith),
        ("a.b glob '*x'", Op::Glob),
        ("a.b iglob '*x'", Op::IGlob),
        ("a.b regex '.*'", Op::Regex),
        ("a.b in (x)", Op::In),
        ("a.b intersects (x)", Op::Intersects),
        ("a.b pmatch (/x)", Op::PMatch),
        ("a.b < 1", Op::Lt),
        ("a.b <= 1", Op::Le),
        ("a.b > 1", Op::Gt),
        ("a.b == 1", Op::Eq),
    ] {
        assert_eq!(check(&parse(src).unwrap()).op, op, "{src}");
    }
}

#[test]
fn lists_with_bare_and_quoted_items() {
    let e = parse("proc.pname in (runc:[0:PARENT], \"puma reactor\", exe)").unwrap();
    let Rhs::List { items, .. } = &check(&e).rhs else {
        panic!()
    };
    let texts: Vec<_> = items.iter().map(|v| v.text.as_str()).collect();
    assert_eq!(texts, ["runc:[0:PARENT]", "puma reactor", "exe"]);
    let e = parse("proc.name in ()").unwrap();
    assert!(matches!(&check(&e).rhs, Rhs::List { items, .. } if items.is_empty()));
    let e = parse("proc.name in shell_binaries").unwrap();
    assert!(matches!(&check(&e).rhs, Rhs::ListRef { name, .. } if name == "shell_binaries"));
}

#[test]
fn field_args_transformers_val_and_modifiers() {
    let e = parse("proc.aname[2]=chef").unwrap();
    assert!(matches!(&check(&e).lhs, FieldExpr::Field { arg: Some(a), .. } if a == "2"));
    let e = parse("tolower(basename(proc.exe)) = val(proc.name)").unwrap();
    let c = check(&e);
    assert_eq!(c.lhs.to_string(), "tolower(basename(proc.exe))");
    assert!(matches!(&c.rhs, Rhs::Field(f) if f.to_string() == "proc.name"));
    let e = parse("proc.name startswith oneof (a, b)").unwrap();
    assert_eq!(check(&e).modifier, Some(Modifier::OneOf));
    let e = parse("proc.name = toupper(proc.pname)").unwrap();
    assert!(matches!(&check(&e).rhs, Rhs::Field(_)));
}

#[test]
fn quoted_escapes() {
    let e = parse(r#"proc.cmdline = "sh -c \"x\" 'y'""#).unwrap();
    assert!(matches!(&check(&e).rhs, Rhs::Value(v) if v.text == r#"sh -c "x" 'y'"#));
    assert_eq!(unquote_item("\"(systemd)\"").0, "(systemd)");
    assert_eq!(unquote_item("plain").0, "plain");
}

#[test]
fn errors_carry_offsets() {
    let err = parse("evt.type=open and").unwrap_err();
    assert_eq!(err.at, 17);
    let err = parse("evt.type=open foo").unwrap_err();
    assert_eq!(err.at, 14);
    assert!(
        err.message.contains("after 'evt.type=open'"),
        "{}",
        err.message
    );
    let err = parse("(a and b").unwrap_err();
    assert_eq!(err.at, 0);
    let err = parse("proc.name").unwrap_err();
    assert_eq!(err.at, 9);
    let err = parse("proc.name in (a, b").unwrap_err();
    assert_eq!(err.at, 13);
    let err = parse("proc.name = 'abc").unwrap_err();
    assert_eq!(err.at, 12);
    let deep = format!("{}a{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).unwrap_err().message.contains("max depth"));
}

#[test]
fn op_and_field_helpers() {
    assert_eq!(
        parse_op("startswith oneof").unwrap(),
        (Op::StartsWith, Some(Modifier::OneOf))
    );
    assert_eq!(parse_op("in").unwrap(), (Op::In, None));
    assert!(parse_op("like").is_err());
    assert_eq!(
        parse_field_expr("tolower(proc.name)").unwrap().to_string(),
        "tolower(proc.name)"
    );
    let (f, n) = parse_output_field("proc.aname[2] rest").unwrap();
    assert_eq!((f.to_string().as_str(), n), ("proc.aname[2]", 13));
    let (f, n) = parse_output_field("fd.name.").unwrap();
    assert_eq!((f.to_string().as_str(), n), ("fd.name", 7));
}
