//! Redis-style glob matching for SCAN/HSCAN MATCH (`stringmatchlen`):
//! `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` and `\` escapes, on bytes.
//!
//! Unlike Redis' recursive matcher this one backtracks only to the last `*`,
//! so a hostile pattern costs O(pattern × string), never exponential time.

/// True if `s` matches the glob `pattern`.
///
/// ```
/// use ringkv::glob_match;
/// assert!(glob_match(b"user:*:session", b"user:42:session"));
/// assert!(glob_match(b"h?llo", b"hello"));
/// assert!(glob_match(b"h[^e]llo", b"hallo"));
/// assert!(!glob_match(b"h[a-b]llo", b"hello"));
/// ```
pub fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = class(pattern, p + 1, s[i]);
                    if matched {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class starting after `[` at `p`; returns whether it
/// matched and the pattern index after the closing `]` (an unterminated class
/// ends with the pattern, as in Redis).
fn class(pattern: &[u8], mut p: usize, c: u8) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (a, b) = (pattern[p].min(pattern[p + 2]), pattern[p].max(pattern[p + 2]));
            matched |= (a..=b).contains(&c);
            p += 3;
        } else {
            matched |= pattern[p] == c;
            p += 1;
        }
    }
    // Skip the closing bracket if there is one.
    let next = if p < pattern.len() { p + 1 } else { p };
    (matched != negate, next)
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn redis_examples() {
        assert!(m(b"*", b""));
        assert!(m(b"*", b"anything"));
        assert!(m(b"h*llo", b"hllo"));
        assert!(m(b"h*llo", b"heeeello"));
        assert!(m(b"h[ae]llo", b"hallo"));
        assert!(!m(b"h[ae]llo", b"hillo"));
        assert!(m(b"h[^e]llo", b"hbllo"));
        assert!(!m(b"h[^e]llo", b"hello"));
        assert!(m(b"h[a-c]llo", b"hbllo"));
        assert!(m(b"h[c-a]llo", b"hbllo"));
        assert!(m(b"h\\*llo", b"h*llo"));
        assert!(!m(b"h\\*llo", b"hxllo"));
        assert!(!m(b"a?", b"a"));
        assert!(m(b"a*b*c", b"aXbYc"));
        assert!(!m(b"a*b*c", b"aXbY"));
        assert!(m(b"*:session", b"user:1:session"));
        assert!(
            m(b"a[bc", b"ab"),
            "an unterminated class ends with the pattern, as in Redis"
        );
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let s = vec![b'a'; 10_000];
        let mut pat = b"*a".repeat(50);
        pat.push(b'b');
        assert!(!m(&pat, &s));
    }
}
