//! Shell-like word splitting (for `QEMU_OPTIONS` and `# qemu:` comments) and quoting
//! (to print command lines that can be pasted into a shell).

use crate::error::{Result, bail};

/// Splits `text` into words as a POSIX shell would, without expansions:
/// blanks separate words, `'...'` is literal, `"..."` keeps blanks and honours
/// `\"`, `\\`, `\$` and `` \` ``, and a backslash outside quotes escapes the next
/// character.
pub fn split(text: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once any character or quote of it was seen ('' is an empty word).
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => bail!("unterminated ' quote in: {text}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => bail!("unterminated \" quote in: {text}"),
                        },
                        Some(c) => word.push(c),
                        None => bail!("unterminated \" quote in: {text}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => bail!("trailing backslash in: {text}"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Quotes one word for a POSIX shell when it needs it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line as one pasteable string.
pub fn join<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_on_blanks() {
        assert_eq!(
            split("  -s   -S\t-d int ").unwrap(),
            ["-s", "-S", "-d", "int"]
        );
        assert!(split("").unwrap().is_empty());
        assert!(split("   ").unwrap().is_empty());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            split(r#"-append 'console=ttyAMA0 quiet' -name "a \"b\" \n""#).unwrap(),
            ["-append", "console=ttyAMA0 quiet", "-name", r#"a "b" \n"#]
        );
        assert_eq!(split(r"a\ b c").unwrap(), ["a b", "c"]);
        assert_eq!(split("x'y z'\"w\"").unwrap(), ["xy zw"]);
        assert_eq!(split("'' a").unwrap(), ["", "a"]);
    }

    #[test]
    fn unterminated_is_an_error() {
        assert!(split("'abc").is_err());
        assert!(split("\"abc").is_err());
        assert!(split("abc\\").is_err());
    }

    #[test]
    fn quote_round_trips() {
        let words = ["-M", "virt,gic-version=3", "a b", "it's", ""];
        let line = join(words);
        assert_eq!(line, r#"-M virt,gic-version=3 'a b' 'it'\''s' ''"#);
        assert_eq!(split(&line).unwrap(), words);
    }
}
