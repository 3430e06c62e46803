//! `multipart/related` bodies (RFC 2387), as Google's upload protocol sends them with
//! `uploadType=multipart`: a JSON metadata part, then the media part.

/// One part: its `Content-Type` and bytes.
#[derive(Debug)]
pub(super) struct Part {
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Splits a `multipart/related` body into its metadata and media parts (exactly two).
pub(super) fn parse_related(content_type: &str, body: &[u8]) -> Result<(Part, Part), String> {
    let mut params = content_type.split(';').map(str::trim);
    let kind = params.next().unwrap_or_default();
    if !kind.eq_ignore_ascii_case("multipart/related") {
        return Err(format!(
            "Content-Type for uploadType=multipart must be multipart/related, not '{kind}'."
        ));
    }
    let boundary = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .filter(|b| !b.is_empty())
        .ok_or("The multipart/related Content-Type has no boundary.")?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    // The preamble, up to the first delimiter, is ignored.
    let start = find(rest, delimiter.as_bytes()).ok_or("No multipart boundary in the body.")?;
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        rest = strip_newline(rest);
        let end = find(rest, delimiter.as_bytes()).ok_or("Unterminated multipart part.")?;
        let raw = strip_trailing_newline(&rest[..end]);
        parts.push(part(raw)?);
        rest = &rest[end + delimiter.len()..];
    }
    let mut parts = parts.into_iter();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(metadata), Some(media), None) => Ok((metadata, media)),
        _ => Err("A multipart upload needs exactly two parts: metadata and media.".to_owned()),
    }
}

fn part(raw: &[u8]) -> Result<Part, String> {
    // A part without headers starts with the blank line itself.
    let (head, body) = if let Some(body) = raw.strip_prefix(b"\r\n") {
        (&raw[..0], body)
    } else if let Some(body) = raw.strip_prefix(b"\n") {
        (&raw[..0], body)
    } else {
        split_head(raw)?
    };
    let head = std::str::from_utf8(head).map_err(|_| "Part headers are not UTF-8.")?;
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_owned());
    Ok(Part {
        content_type,
        body: body.to_vec(),
    })
}

/// Headers and body of a part, split at the first blank line.
fn split_head(raw: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if let Some(i) = find(raw, b"\r\n\r\n") {
        return Ok((&raw[..i], &raw[i + 4..]));
    }
    find(raw, b"\n\n")
        .map(|i| (&raw[..i], &raw[i + 2..]))
        .ok_or_else(|| "A multipart part has no blank line after its headers.".to_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn strip_newline(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_prefix(b"\r\n")
        .or_else(|| bytes.strip_prefix(b"\n"))
        .unwrap_or(bytes)
}

fn strip_trailing_newline(bytes: &[u8]) -> &[u8] {
    bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_media_parts_are_split_at_the_boundary() {
        let body = b"--b1\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{\"name\":\"a/b\"}\r\n--b1\r\nContent-Type: application/json\r\n\r\n{\"keys\":[]}\r\n--b1--\r\n";
        let (metadata, media) = parse_related("multipart/related; boundary=\"b1\"", body).unwrap();
        assert_eq!(metadata.body, b"{\"name\":\"a/b\"}");
        assert_eq!(media.body, b"{\"keys\":[]}");
        assert_eq!(media.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn a_media_part_may_hold_the_boundary_prefix_and_newlines() {
        let body =
            b"--xx\r\n\r\n{}\r\n--xx\r\nContent-Type: text/plain\r\n\r\nline\r\n-x\r\n\r\n--xx--";
        let (_, media) = parse_related("multipart/related; boundary=xx", body).unwrap();
        assert_eq!(media.body, b"line\r\n-x\r\n");
    }

    #[test]
    fn wrong_types_missing_boundaries_and_extra_parts_are_refused() {
        assert!(parse_related("application/json", b"{}").is_err());
        assert!(parse_related("multipart/related", b"--a\r\n\r\n{}\r\n--a--").is_err());
        let three = b"--a\r\n\r\n{}\r\n--a\r\n\r\nx\r\n--a\r\n\r\ny\r\n--a--";
        assert!(parse_related("multipart/related; boundary=a", three).is_err());
        let unterminated = b"--a\r\n\r\n{}\r\n--a\r\n\r\nx";
        assert!(parse_related("multipart/related; boundary=a", unterminated).is_err());
    }
}
