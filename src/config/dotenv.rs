//! `.env` syntax: `KEY=VALUE` lines.

use std::collections::HashMap;

/// Parse `KEY=VALUE` lines: `#` comments, blank lines, an optional `export `, optional
/// single or double quotes around the value.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(".env line {}: expected KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                ".env line {}: '{key}' is not a variable name",
                i + 1
            ));
        }
        let value = value.trim();
        let quoted = value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')));
        let value = if quoted {
            &value[1..value.len() - 1]
        } else {
            // An unquoted value may carry a trailing " # comment".
            value.split(" #").next().unwrap_or("").trim_end()
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}
