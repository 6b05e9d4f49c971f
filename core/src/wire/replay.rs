//! Replay requests: the way back from a subscriber to a station. A collector that finds
//! events missing — a broker that crashed after acknowledging them, a store restored from
//! an old backup — publishes `{"boot": B, "first": F, "last": L}` on
//! `<prefix>/<station>/replay`, and the station queues the archived events of boot B with
//! sequence numbers F..=L again (from its archive of delivered events).
//!
//! Inbound payloads are untrusted: size-limited, parsed strictly, ranges bounded; a bad one
//! is ignored and counted, never acted on.

use serde::{Deserialize, Serialize};

/// The largest request payload read (a request is about 40 bytes).
pub const MAX_REQUEST_BYTES: usize = 1024;

/// The most sequence numbers one request may cover.
pub const MAX_RANGE: u64 = 100_000;

/// Queue boot `boot`'s events `first..=last` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Boot counter of the events.
    pub boot: u64,
    /// First sequence number.
    pub first: u64,
    /// Last sequence number (inclusive).
    pub last: u64,
}

/// Why an inbound message was ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// Larger than any valid request.
    #[error("{size} bytes, more than a request may be ({MAX_REQUEST_BYTES})")]
    TooLarge {
        /// Payload size.
        size: usize,
    },
    /// Not a request.
    #[error("not a replay request: {0}")]
    Malformed(String),
    /// An empty or too long range.
    #[error("sequence range {first}..={last} is empty or longer than {MAX_RANGE}")]
    BadRange {
        /// First.
        first: u64,
        /// Last.
        last: u64,
    },
}

impl ReplayRequest {
    /// Parses and checks an inbound payload.
    ///
    /// # Errors
    /// [`InboundError`], each case its own.
    pub fn parse(payload: &[u8]) -> Result<Self, InboundError> {
        if payload.len() > MAX_REQUEST_BYTES {
            return Err(InboundError::TooLarge {
                size: payload.len(),
            });
        }
        let req: Self =
            serde_json::from_slice(payload).map_err(|e| InboundError::Malformed(e.to_string()))?;
        if req.last < req.first || req.last - req.first >= MAX_RANGE {
            return Err(InboundError::BadRange {
                first: req.first,
                last: req.last,
            });
        }
        Ok(req)
    }

    /// Requests covering `first..=last` in ranges of at most [`MAX_RANGE`], made as they
    /// are taken (a claimed gap of 2^63 sequence numbers must not be built in memory).
    pub fn covering(boot: u64, first: u64, last: u64) -> impl Iterator<Item = Self> {
        let mut from = Some(first).filter(|&f| f <= last);
        std::iter::from_fn(move || {
            let start = from?;
            let end = last.min(start.saturating_add(MAX_RANGE - 1));
            from = end.checked_add(1).filter(|&n| n <= last);
            Some(Self {
                boot,
                first: start,
                last: end,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_request_parses() {
        assert_eq!(
            ReplayRequest::parse(br#"{"boot": 3, "first": 10, "last": 12}"#),
            Ok(ReplayRequest {
                boot: 3,
                first: 10,
                last: 12
            })
        );
    }

    #[test]
    fn bad_requests_are_refused_each_for_its_reason() {
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            ReplayRequest::parse(&big),
            Err(InboundError::TooLarge { .. })
        ));
        for bad in [
            &b"not json"[..],
            br#"{"boot": 1, "first": 0}"#,
            br#"{"boot": 1, "first": 0, "last": 1, "rm": "-rf"}"#,
            br#"{"boot": -1, "first": 0, "last": 1}"#,
        ] {
            assert!(
                matches!(ReplayRequest::parse(bad), Err(InboundError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for (first, last) in [(5, 4), (0, MAX_RANGE)] {
            let text = format!(r#"{{"boot": 1, "first": {first}, "last": {last}}}"#);
            assert_eq!(
                ReplayRequest::parse(text.as_bytes()),
                Err(InboundError::BadRange { first, last })
            );
        }
    }

    #[test]
    fn long_gaps_are_split_into_valid_requests() {
        let reqs: Vec<_> = ReplayRequest::covering(2, 5, 5 + 2 * MAX_RANGE).collect();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].first, 5);
        assert_eq!(reqs[2].last, 5 + 2 * MAX_RANGE);
        for (a, b) in reqs.iter().zip(&reqs[1..]) {
            assert_eq!(a.last + 1, b.first);
        }
        for r in &reqs {
            let text = serde_json::to_vec(r).unwrap();
            assert_eq!(ReplayRequest::parse(&text).as_ref(), Ok(r));
        }
        assert_eq!(ReplayRequest::covering(1, 4, 3).count(), 0);
        let top: Vec<_> = ReplayRequest::covering(1, u64::MAX - 1, u64::MAX).collect();
        assert_eq!((top.len(), top[0].last), (1, u64::MAX));
        // A gap of 2^63 is never built: requests are made as they are taken.
        let mut huge = ReplayRequest::covering(1, 0, u64::MAX / 2);
        assert_eq!(huge.nth(63).map(|r| r.first), Some(63 * MAX_RANGE));
    }
}
