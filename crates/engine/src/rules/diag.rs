//! Load errors and warnings in Falco's shapes: codes from `falco_load_result.cpp`, the text of
//! `falco -V` and the `falco_load_results` JSON (falco.md §1.5).

use std::{fmt::Write as _, sync::Arc};

use serde::Serialize;

/// Falco's load result codes, errors first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    ErrFileRead,
    ErrYamlParse,
    ErrYamlValidate,
    ErrCompileCondition,
    ErrCompileOutput,
    ErrValidate,
    ErrExtension,
    UnknownSource,
    UnsafeNaCheck,
    NoEvttype,
    UnknownFilter,
    UnusedMacro,
    UnusedList,
    UnknownItem,
    DeprecatedItem,
    WarningExtension,
    AppendNoValues,
    ExceptionNameNotUnique,
    InvalidMacroName,
    InvalidListName,
    CompileCondition,
    UnknownKey,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::ErrFileRead => "LOAD_ERR_FILE_READ",
            Code::ErrYamlParse => "LOAD_ERR_YAML_PARSE",
            Code::ErrYamlValidate => "LOAD_ERR_YAML_VALIDATE",
            Code::ErrCompileCondition => "LOAD_ERR_COMPILE_CONDITION",
            Code::ErrCompileOutput => "LOAD_ERR_COMPILE_OUTPUT",
            Code::ErrValidate => "LOAD_ERR_VALIDATE",
            Code::ErrExtension => "LOAD_ERR_EXTENSION",
            Code::UnknownSource => "LOAD_UNKNOWN_SOURCE",
            Code::UnsafeNaCheck => "LOAD_UNSAFE_NA_CHECK",
            Code::NoEvttype => "LOAD_NO_EVTTYPE",
            Code::UnknownFilter => "LOAD_UNKNOWN_FILTER",
            Code::UnusedMacro => "LOAD_UNUSED_MACRO",
            Code::UnusedList => "LOAD_UNUSED_LIST",
            Code::UnknownItem => "LOAD_UNKNOWN_ITEM",
            Code::DeprecatedItem => "LOAD_DEPRECATED_ITEM",
            Code::WarningExtension => "LOAD_WARNING_EXTENSION",
            Code::AppendNoValues => "LOAD_APPEND_NO_VALUES",
            Code::ExceptionNameNotUnique => "LOAD_EXCEPTION_NAME_NOT_UNIQUE",
            Code::InvalidMacroName => "LOAD_INVALID_MACRO_NAME",
            Code::InvalidListName => "LOAD_INVALID_LIST_NAME",
            Code::CompileCondition => "LOAD_COMPILE_CONDITION",
            Code::UnknownKey => "LOAD_UNKNOWN_KEY",
        }
    }

    pub fn desc(self) -> &'static str {
        match self {
            Code::ErrFileRead => "Could not read file",
            Code::ErrYamlParse => "Invalid yaml",
            Code::ErrYamlValidate => "Error validating internal structure of YAML file",
            Code::ErrCompileCondition => "Error compiling condition",
            Code::ErrCompileOutput => "Error compiling output",
            Code::ErrValidate => "Error validating rule/macro/list/exception objects",
            Code::ErrExtension => "Error in extension item",
            Code::UnknownSource => "Unknown rule source",
            Code::UnsafeNaCheck => "Unsafe <NA> comparison in condition",
            Code::NoEvttype => "Condition has no event-type restriction",
            Code::UnknownFilter => "Unknown field or event-type in condition or output",
            Code::UnusedMacro => "Unused macro",
            Code::UnusedList => "Unused list",
            Code::UnknownItem => "Unknown rules file item",
            Code::DeprecatedItem => "Used deprecated item",
            Code::WarningExtension => "Extension item has a warning",
            Code::AppendNoValues => "Overriding/appending exception with no values",
            Code::ExceptionNameNotUnique => "Multiple exceptions defined with the same name",
            Code::InvalidMacroName => "Invalid macro name",
            Code::InvalidListName => "Invalid list name",
            Code::CompileCondition => "Condition has non-fatal compilation warnings",
            Code::UnknownKey => "Unknown key in item",
        }
    }

    pub fn is_error(self) -> bool {
        matches!(
            self,
            Code::ErrFileRead
                | Code::ErrYamlParse
                | Code::ErrYamlValidate
                | Code::ErrCompileCondition
                | Code::ErrCompileOutput
                | Code::ErrValidate
                | Code::ErrExtension
        )
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A position in a file (1-based line and column; 0:0 for the file as a whole).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    pub name: Arc<str>,
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

/// One step of where a problem is: the file, the item, the condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub item_type: String,
    pub item_name: String,
    pub position: Position,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Context {
    pub locations: Vec<Location>,
    pub snippet: String,
}

/// One error or warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub code: Code,
    pub codedesc: &'static str,
    pub message: String,
    pub context: Context,
}

impl Diagnostic {
    /// The most precise position (the last location).
    pub fn position(&self) -> Option<&Position> {
        self.context.locations.last().map(|l| &l.position)
    }

    /// `file:line:column` of the most precise position.
    pub fn at(&self) -> String {
        self.position()
            .map(|p| format!("{}:{}:{}", p.name, p.line, p.column))
            .unwrap_or_default()
    }
}

/// The lines around a position with a `^` under the column.
pub fn snippet(text: &str, line: usize, column: usize) -> String {
    let Some(l) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let pad: String = l
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("{l}\n{pad}^\n")
}

/// The results for one file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileResult {
    pub name: String,
    pub successful: bool,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

fn render_list(out: &mut String, what: &str, diags: &[Diagnostic]) {
    let _ = writeln!(out, "{} {what}:", diags.len());
    for d in diags {
        for (i, l) in d.context.locations.iter().enumerate() {
            let indent = if i == 0 { "" } else { "    " };
            let _ = writeln!(
                out,
                "{indent}{}: ({}:{}:{})",
                describe(l),
                l.position.name,
                l.position.line,
                l.position.column
            );
        }
        if !d.context.snippet.is_empty() {
            let _ = write!(out, "------\n{}------\n", d.context.snippet);
        }
        let _ = writeln!(out, "{} ({}): {}", d.code.as_str(), d.codedesc, d.message);
    }
}

fn describe(l: &Location) -> String {
    if l.item_type == "rules content" {
        "In rules content".to_string()
    } else if l.item_name.is_empty() {
        l.item_type.clone()
    } else if l.item_type == "condition expression" {
        let mut name: String = l.item_name.chars().take(20).collect();
        if name.len() < l.item_name.len() {
            name.push_str("..");
        }
        format!("{} \"{}\"", l.item_type, name.replace('\n', " "))
    } else {
        format!("{} '{}'", l.item_type, l.item_name)
    }
}

impl FileResult {
    /// Falco's `-V` text: `<file>: Ok`, `Ok, with warnings`, or `Invalid` and the details.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let status = if !self.successful {
            "Invalid"
        } else if self.warnings.is_empty() {
            "Ok"
        } else {
            "Ok, with warnings"
        };
        let _ = writeln!(out, "{}: {status}", self.name);
        if !self.errors.is_empty() {
            render_list(&mut out, "Errors", &self.errors);
        }
        if !self.warnings.is_empty() {
            render_list(&mut out, "Warnings", &self.warnings);
        }
        out
    }
}

/// `{"falco_load_results": [...]}`.
pub fn render_json(files: &[FileResult]) -> String {
    serde_json::json!({ "falco_load_results": files }).to_string()
}
