//! Message statuses and the only order they may move in, Twilio error
//! codes in words, and the opt-out keywords.
//!
//! Order: accepted/scheduled < queued < sending < sent < delivered < read.
//! `failed`, `undelivered` and `canceled` are terminal: they end the message
//! from any non-terminal status and nothing moves it afterwards. So the
//! final status does not depend on the order callbacks arrive in: the first
//! terminal one, else the furthest along.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    Accepted,
    Scheduled,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    Undelivered,
    Canceled,
}

impl MessageStatus {
    /// Every status a callback may move a message to (the `messages.status` CHECK, plus `received`).
    pub const ALL: [MessageStatus; 10] = [
        Self::Accepted,
        Self::Scheduled,
        Self::Queued,
        Self::Sending,
        Self::Sent,
        Self::Delivered,
        Self::Read,
        Self::Failed,
        Self::Undelivered,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Undelivered => "undelivered",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        let raw = if raw == "cancelled" { "canceled" } else { &raw };
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Failed | Self::Undelivered | Self::Canceled)
    }

    fn rank(self) -> u8 {
        match self {
            Self::Accepted | Self::Scheduled => 0,
            Self::Queued => 1,
            Self::Sending => 2,
            Self::Sent => 3,
            Self::Delivered => 4,
            Self::Read => 5,
            Self::Failed | Self::Undelivered | Self::Canceled => u8::MAX,
        }
    }

    /// Whether a message in `self` may move to `next`: forward only, never out of a terminal status.
    pub fn may_become(self, next: MessageStatus) -> bool {
        !self.is_terminal() && (next.is_terminal() || next.rank() > self.rank())
    }

    /// The statuses a message may be in for `next` to apply (what the SQL update matches on).
    pub fn predecessors(next: MessageStatus) -> Vec<&'static str> {
        Self::ALL
            .into_iter()
            .filter(|s| s.may_become(next))
            .map(Self::as_str)
            .collect()
    }
}

/// Twilio's error codes in words (the ones messaging meets most); others say their number.
pub fn error_message(code: i32) -> String {
    let known = match code {
        21211 => "Invalid 'To' phone number",
        21408 => "Permission to send to this region is not enabled",
        21610 => "The recipient has opted out (replied STOP)",
        21614 => "'To' is not a valid mobile number",
        21654 | 63013 => "Template variables are missing or invalid",
        20404 => "Unknown resource (e.g. the template's content SID)",
        30001 => "Queue overflow: too many messages queued",
        30002 => "Account suspended",
        30003 => "Unreachable destination handset",
        30004 => "Message blocked by the recipient or carrier",
        30005 => "Unknown destination handset",
        30006 => "Landline or unreachable carrier",
        30007 => "Message filtered by the carrier",
        30008 => "Unknown delivery error",
        63003 => "The recipient is not a WhatsApp user",
        63016 => "Outside the WhatsApp 24-hour window: a template is required",
        63024 => "Invalid message recipient",
        _ => return format!("Twilio error {code}"),
    };
    format!("{known} ({code})")
}

/// What a whole inbound message asks of the subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
}

const OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "SAIR",
    "PARAR",
    "CANCELAR",
    "DUR",
    "IPTAL",
];

/// The message is a keyword only when it is nothing else (trimmed, any case;
/// Turkish `İptal`/`iptal` included).
pub fn keyword(body: Option<&str>) -> Option<Keyword> {
    let word = body?
        .trim()
        .replace('İ', "I")
        .replace('ı', "i")
        .to_uppercase();
    if OPT_OUT.contains(&word.as_str()) {
        Some(Keyword::OptOut)
    } else if word == "START" {
        Some(Keyword::OptIn)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageStatus::*;

    /// The final status after applying `order` one by one, forward only.
    fn apply(order: &[MessageStatus]) -> MessageStatus {
        order.iter().skip(1).fold(
            order[0],
            |cur, next| {
                if cur.may_become(*next) { *next } else { cur }
            },
        )
    }

    fn permutations(items: &[MessageStatus]) -> Vec<Vec<MessageStatus>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, first);
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn statuses_only_move_forward_whatever_order_they_arrive_in() {
        for (set, last) in [
            (vec![Queued, Sent, Delivered, Read], Read),
            (vec![Queued, Sending, Sent, Delivered], Delivered),
            (vec![Sending, Sent, Undelivered, Delivered], Undelivered),
            (vec![Queued, Sent, Failed, Read], Failed),
        ] {
            let perms = permutations(&set);
            assert_eq!(perms.len(), 24);
            for p in perms {
                // Starting from queued, as the send worker stores a message.
                let mut order = vec![Queued];
                order.extend(p.iter().copied());
                assert_eq!(apply(&order), last, "{p:?}");
            }
        }
    }

    #[test]
    fn terminal_statuses_are_never_undone() {
        for t in [Failed, Undelivered, Canceled] {
            for s in MessageStatus::ALL {
                assert!(!t.may_become(s), "{t:?} -> {s:?}");
            }
        }
        assert!(Sent.may_become(Failed));
        assert!(!Delivered.may_become(Sent));
        assert!(!Read.may_become(Delivered));
        assert!(!Sent.may_become(Sent));
        assert_eq!(
            MessageStatus::predecessors(Sent),
            ["accepted", "scheduled", "queued", "sending"]
        );
    }

    #[test]
    fn status_names_parse_in_any_case() {
        assert_eq!(MessageStatus::parse("Delivered"), Some(Delivered));
        assert_eq!(MessageStatus::parse("cancelled"), Some(Canceled));
        assert_eq!(MessageStatus::parse("receiving"), None);
    }

    #[test]
    fn error_codes_read_as_words() {
        assert_eq!(
            error_message(63016),
            "Outside the WhatsApp 24-hour window: a template is required (63016)"
        );
        assert_eq!(error_message(12345), "Twilio error 12345");
    }

    #[test]
    fn opt_out_keywords_only_as_the_whole_message() {
        for w in [
            "STOP",
            "stop",
            " Stop\n",
            "STOPALL",
            "unsubscribe",
            "cancel",
            "END",
            "quit",
            "Sair",
            "PARAR",
            "cancelar",
            "dur",
            "İPTAL",
            "iptal",
            "İptal",
        ] {
            assert_eq!(keyword(Some(w)), Some(Keyword::OptOut), "{w}");
        }
        assert_eq!(keyword(Some(" start ")), Some(Keyword::OptIn));
        for w in ["please stop", "STOP!", "stopp", "", "Merhaba"] {
            assert_eq!(keyword(Some(w)), None, "{w}");
        }
        assert_eq!(keyword(None), None);
    }
}
