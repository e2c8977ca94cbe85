//! The recursive-descent parser over characters (see the module above for why characters and
//! not tokens), with its word and symbol operator tables.

use super::*;

pub(super) struct Parser<'a> {
    pub(super) s: &'a str,
    pub(super) pos: usize,
    pub(super) depth: usize,
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_bare_char(c: char) -> bool {
    !matches!(
        c,
        ' ' | '\u{8}' | '\t' | '\n' | '\r' | '(' | ')' | ',' | '=' | '"' | '\''
    )
}

const WORD_OPS: [(&str, Op); 13] = [
    ("bcontains", Op::BContains),
    ("bstartswith", Op::BStartsWith),
    ("contains", Op::Contains),
    ("endswith", Op::EndsWith),
    ("exists", Op::Exists),
    ("glob", Op::Glob),
    ("icontains", Op::IContains),
    ("iglob", Op::IGlob),
    ("intersects", Op::Intersects),
    ("in", Op::In),
    ("pmatch", Op::PMatch),
    ("regex", Op::Regex),
    ("startswith", Op::StartsWith),
];

const SYM_OPS: [(&str, Op); 7] = [
    ("==", Op::Eq),
    ("!=", Op::Ne),
    ("<=", Op::Le),
    (">=", Op::Ge),
    ("=", Op::Eq),
    ("<", Op::Lt),
    (">", Op::Gt),
];

impl<'a> Parser<'a> {
    pub(super) fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(super) fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            at: self.pos,
            message: message.into(),
        }
    }

    pub(super) fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x08) {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    /// Consumes `word` when it stands alone (not the start of a longer identifier).
    pub(super) fn keyword(&mut self, word: &str) -> bool {
        let rest = self.rest();
        if rest.starts_with(word)
            && !rest
                .as_bytes()
                .get(word.len())
                .is_some_and(|c| is_ident_char(*c))
        {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    pub(super) fn word_preview(&self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || matches!(c, '(' | ')' | ','))
            .map_or(rest.len(), |(i, _)| i);
        let end = if end == 0 {
            rest.chars().next().map_or(0, char::len_utf8)
        } else {
            end
        };
        &rest[..end]
    }

    pub(super) fn unexpected_after(&self) -> ParseError {
        let prev = self.s[..self.pos].trim_end();
        let last = prev
            .rsplit(|c: char| c.is_whitespace())
            .next()
            .unwrap_or_default();
        self.err(format!(
            "unexpected token '{}' after '{}', expecting 'or', 'and'",
            self.word_preview(),
            last
        ))
    }

    pub(super) fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("exceeded max depth limit of {MAX_DEPTH}")));
        }
        Ok(())
    }

    pub(super) fn or_expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut items = vec![self.and_expr()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("or") {
                items.push(self.and_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::Or(Vec::new()))
        } else {
            Expr::Or(items)
        })
    }

    pub(super) fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.not_expr()?];
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("and") {
                items.push(self.not_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Expr::And(Vec::new()))
        } else {
            Expr::And(items)
        })
    }

    pub(super) fn not_expr(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        if self.rest().starts_with("not")
            && matches!(
                self.s.as_bytes().get(self.pos + 3),
                Some(b' ' | b'\t' | b'\n' | b'\r' | b'(')
            )
        {
            self.pos += 3;
            self.enter()?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.check()
    }

    pub(super) fn check(&mut self) -> Result<Expr, ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => {
                return Err(
                    self.err("unexpected end of condition, expecting a field, macro or '('")
                );
            }
            Some(b'(') => {
                self.pos += 1;
                let e = self.or_expr()?;
                self.skip_ws();
                if self.peek() != Some(b')') {
                    if self.pos >= self.s.len() {
                        return Err(self.err("expecting ')' to close the '(' opened here"))
                            .map_err(|mut e| {
                                e.at = start;
                                e
                            });
                    }
                    return Err(self.err(format!(
                        "unexpected token '{}', expecting ')', 'or', 'and'",
                        self.word_preview()
                    )));
                }
                self.pos += 1;
                return Ok(e);
            }
            Some(c) if c.is_ascii_alphabetic() => {}
            Some(_) => {
                return Err(self.err(format!(
                    "unexpected token '{}', expecting a field, a macro, 'not' or '('",
                    self.word_preview()
                )));
            }
        }
        // Transformer call, field, or macro name.
        if self.transformer_ahead().is_some() {
            let lhs = self.field_expr()?;
            return self.condition(lhs);
        }
        let name = self.dotted_name();
        if name.contains('.') {
            self.pos = start;
            let lhs = self.field_expr()?;
            self.condition(lhs)
        } else {
            Ok(Expr::Ident { name, at: start })
        }
    }

    /// `[a-zA-Z]+[a-zA-Z0-9_]*(\.[a-zA-Z]+[a-zA-Z0-9_]*)*`
    pub(super) fn dotted_name(&mut self) -> String {
        let start = self.pos;
        let b = self.s.as_bytes();
        loop {
            if !b.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                break;
            }
            while b.get(self.pos).is_some_and(|c| is_ident_char(*c)) {
                self.pos += 1;
            }
            if b.get(self.pos) == Some(&b'.')
                && b.get(self.pos + 1).is_some_and(u8::is_ascii_alphabetic)
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        self.s[start..self.pos].to_string()
    }

    pub(super) fn transformer_ahead(&self) -> Option<Transformer> {
        let rest = self.rest();
        Transformer::ALL.into_iter().find(|t| {
            rest.starts_with(t.name()) && rest.as_bytes().get(t.name().len()) == Some(&b'(')
        })
    }

    pub(super) fn field_expr(&mut self) -> Result<FieldExpr, ParseError> {
        let start = self.pos;
        if let Some(tr) = self.transformer_ahead() {
            self.pos += tr.name().len() + 1;
            self.skip_ws();
            let inner = self.field_expr()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.err(format!("expecting ')' to close {}(", tr.name())));
            }
            self.pos += 1;
            return Ok(FieldExpr::Transform {
                tr,
                inner: Box::new(inner),
                at: start,
            });
        }
        let name = self.dotted_name();
        if name.is_empty() || !name.contains('.') {
            self.pos = start;
            return Err(self.err(format!(
                "expecting a field name, found '{}'",
                self.word_preview()
            )));
        }
        let mut arg = None;
        if self.peek() == Some(b'[') {
            self.pos += 1;
            let a = if matches!(self.peek(), Some(b'"' | b'\'')) {
                self.quoted()?
            } else {
                let rest = self.rest();
                let end = rest
                    .find(|c: char| {
                        matches!(
                            c,
                            ' ' | '\u{8}' | '\t' | '\n' | '\r' | '[' | ']' | '"' | '\''
                        )
                    })
                    .unwrap_or(rest.len());
                self.pos += end;
                rest[..end].to_string()
            };
            if self.peek() != Some(b']') {
                return Err(self.err(format!(
                    "expecting ']' after the argument of field '{name}'"
                )));
            }
            self.pos += 1;
            arg = Some(a);
        }
        Ok(FieldExpr::Field {
            name,
            arg,
            at: start,
        })
    }

    pub(super) fn operator(&mut self) -> Option<Op> {
        for (s, op) in SYM_OPS {
            if self.rest().starts_with(s) {
                self.pos += s.len();
                return Some(op);
            }
        }
        for (s, op) in WORD_OPS {
            if self.keyword(s) {
                return Some(op);
            }
        }
        None
    }

    pub(super) fn modifier(&mut self, alone: bool) -> Option<Modifier> {
        for m in [Modifier::OneOf, Modifier::AnyOf, Modifier::AllOf] {
            let save = self.pos;
            if self.keyword(m.as_str()) {
                let mut look = self.pos;
                while self
                    .s
                    .as_bytes()
                    .get(look)
                    .is_some_and(|c| c.is_ascii_whitespace())
                {
                    look += 1;
                }
                // `startswith oneof` alone compares with the string "oneof".
                if alone
                    || self.s.as_bytes().get(look) == Some(&b'(')
                    || self
                        .s
                        .as_bytes()
                        .get(look)
                        .is_some_and(u8::is_ascii_alphabetic)
                {
                    return Some(m);
                }
                self.pos = save;
            }
        }
        None
    }

    pub(super) fn condition(&mut self, lhs: FieldExpr) -> Result<Expr, ParseError> {
        self.skip_ws();
        let at = self.pos;
        let Some(op) = self.operator() else {
            return Err(self.err(format!(
                "expected a comparison operator after field '{lhs}', found '{}'",
                self.word_preview()
            )));
        };
        if op == Op::Exists {
            return Ok(Expr::Check(Box::new(Check {
                lhs,
                op,
                modifier: None,
                rhs: Rhs::None,
                at,
            })));
        }
        self.skip_ws();
        let modifier = if op.takes_modifier() {
            self.modifier(false)
        } else {
            None
        };
        if modifier.is_some() {
            self.skip_ws();
        }
        let rhs = if self.rest().starts_with("val(") {
            self.pos += 4;
            self.skip_ws();
            let f = self.field_expr()?;
            self.skip_ws();
            if self.peek() != Some(b')') {
                return Err(self.err("expecting ')' to close val("));
            }
            self.pos += 1;
            Rhs::Field(f)
        } else if self.transformer_ahead().is_some() {
            Rhs::Field(self.field_expr()?)
        } else if op.is_list() || modifier.is_some() {
            self.list_value(op)?
        } else {
            Rhs::Value(self.scalar_value(op)?)
        };
        Ok(Expr::Check(Box::new(Check {
            lhs,
            op,
            modifier,
            rhs,
            at,
        })))
    }

    pub(super) fn list_value(&mut self, op: Op) -> Result<Rhs, ParseError> {
        let at = self.pos;
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            break;
                        }
                        None => {
                            return Err(ParseError {
                                at,
                                message: "unterminated list: expecting ')'".into(),
                            });
                        }
                        _ => {}
                    }
                    if !items.is_empty() {
                        if self.peek() != Some(b',') {
                            return Err(self.err(format!(
                                "expecting ',' or ')' in list, found '{}'",
                                self.word_preview()
                            )));
                        }
                        self.pos += 1;
                        self.skip_ws();
                    }
                    items.push(self.scalar_value(op)?);
                }
                Ok(Rhs::List { items, at })
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name = self.dotted_name();
                if name.contains('.') {
                    return Err(ParseError {
                        at,
                        message: format!(
                            "expected a list after '{}', found '{name}' (use val({name}) to compare with a field)",
                            op.as_str()
                        ),
                    });
                }
                Ok(Rhs::ListRef { name, at })
            }
            _ => Err(self.err(format!(
                "expected a list after '{}', found '{}'",
                op.as_str(),
                self.word_preview()
            ))),
        }
    }

    pub(super) fn scalar_value(&mut self, op: Op) -> Result<Value, ParseError> {
        let at = self.pos;
        if matches!(self.peek(), Some(b'"' | b'\'')) {
            let text = self.quoted()?;
            return Ok(Value {
                text,
                quoted: true,
                at,
            });
        }
        let rest = self.rest();
        let end = rest.find(|c: char| !is_bare_char(c)).unwrap_or(rest.len());
        if end == 0 {
            return Err(self.err(format!(
                "expected a value after '{}', found '{}'",
                op.as_str(),
                self.word_preview()
            )));
        }
        self.pos += end;
        Ok(Value {
            text: rest[..end].to_string(),
            quoted: false,
            at,
        })
    }

    /// A quoted string with libsinsp's escapes.
    pub(super) fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let bytes = self.s.as_bytes();
        let q = bytes[self.pos];
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.s[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            if c == q as char {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, 'b')) => out.push('\u{8}'),
                    Some((_, 'f')) => out.push('\u{c}'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e)) => out.push(e),
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err(ParseError {
            at: start,
            message: "unterminated quoted string".into(),
        })
    }
}
