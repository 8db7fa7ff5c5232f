//! Deterministic intent classification and one-line summaries for cold-email
//! replies (received from Instantly.ai) in English, Turkish and Portuguese (BR).
//!
//! Invariants:
//! - Pure and deterministic: no I/O, no clock, no randomness; the same input
//!   always yields the same [`Intent`] and summary.
//! - Quoted history (our own pitch) never influences the result: the body is
//!   cut by [`strip_quoted`] before matching.
//! - Matching runs on normalised tokens: lowercased, Turkish/Portuguese
//!   diacritics folded to ASCII (`ı→i`, `ş→s`, `ç→c`, `ã→a`, ...), apostrophes
//!   and hyphens removed (`I'm→im`, `e-mail→email`), everything else that is not
//!   alphanumeric splits words. Phrases match whole words (`no` never matches
//!   inside `know`); a pattern word ending in `*` is a prefix (Turkish suffixes).
//! - Rules are tried in a fixed priority order and the first hit wins:
//!   `Unsubscribe > OutOfOffice > WrongPerson > NotInterested > MeetingRequest >
//!   Interested > Question > Unknown`. Negated interest ("not interested",
//!   "sem interesse", "ilgilenmiyorum") is NotInterested, which outranks
//!   Interested. Only out-of-office is read from the subject, because a reply's
//!   subject usually repeats our own pitch.

/// Classified intent of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    Interested,
    MeetingRequest,
    Question,
    NotInterested,
    Unsubscribe,
    OutOfOffice,
    WrongPerson,
    Unknown,
}

/// Longest summary in chars, including the trailing `…` when cut.
const SUMMARY_MAX_CHARS: usize = 200;
/// Only the first tokens of a (stripped) reply are examined; bounds the work.
const MAX_TOKENS: usize = 2_000;

/// Rules in priority order (first hit wins): `|`-separated, pre-normalised phrases.
const RULES: &[(Intent, &str)] = &[
    (
        Intent::Unsubscribe,
        "\
        unsubscribe*|unsub|remove me|remove us|remove my|remove our|please remove|take me off|\
        take us off|opt out|opt me out|optout|stop emailing|stop sending|stop contacting|\
        stop spamming|stop messaging|dont email|do not email|dont contact|do not contact|\
        dont send|do not send|never email|no more emails|off your list|off your mailing list|\
        leave me alone|this is spam|mark* as spam|reported as spam|gdpr|descadastr*|me remova|\
        me remove|me remover|remover da lista|remova meu|remover meu|me tire|me tirem|me retire|\
        tirar da lista|tire da lista|tirem da lista|tire meu|nao quero receber|\
        nao quero mais receber|nao desejo receber|pare de enviar|parem de enviar|\
        pare de me enviar|parem de me enviar|pare de mandar|parem de mandar|nao me envie|\
        nao me enviem|nao me mande|nao enviem|cancelar inscricao|cancelar assinatura|\
        sair da lista|isso e spam|lgpd|listeden cikar*|listenizden cikar*|listeden sil*|\
        listenizden sil*|beni listeden|beni listenizden|abonelikten cik*|abonelik iptal*|\
        aboneligimi iptal*|mail* atmayin|mail* gondermeyin|eposta* gondermeyin|eposta* atmayin|\
        email* gondermeyin|mesaj* gondermeyin|bana yazmayin|rahatsiz etmeyin|\
        mail* almak istemiyorum|eposta* almak istemiyorum|kvkk",
    ),
    (
        Intent::OutOfOffice,
        "\
        out of office|out of the office|outofoffice|ooo|on vacation|on holiday|on leave|\
        annual leave|parental leave|maternity leave|paternity leave|autoreply|auto reply|\
        automatic reply|automatic response|autoresponder|away from the office|away from my desk|\
        limited access to|currently away|currently out|back in the office|back in office|\
        will return on|returning on|i will be back|ill be back|out until|away until|\
        fora do escritorio|de ferias|em ferias|resposta automatica|mensagem automatica|\
        resposta automatizada|ausente|de licenca|em licenca|retornarei|estarei fora|\
        acesso limitado|ofis disinda*|ofiste degilim|ofiste olmayacagim|izindeyim|izinde|\
        izinli*|yillik izin*|tatil*|otomatik yanit*|otomatik cevap*|otomatik mesaj*|donecegim|\
        donusumde|sinirli erisim*",
    ),
    (
        Intent::WrongPerson,
        "\
        wrong person|wrong contact|wrong email|wrong address|not the right person|\
        not the right contact|not the person|not the decision maker|no longer works|\
        no longer with|no longer employed|no longer at|i no longer work|is no longer|\
        left the company|has left|doesnt work here|does not work here|not my department|\
        not my area|not responsible for|not in charge of|please contact|please reach out to|\
        you should contact|you should reach out|contact my colleague|better person|\
        right person would be|pessoa errada|contato errado|email errado|nao sou a pessoa|\
        nao sou o responsavel|nao sou a responsavel|nao trabalha mais|nao faz mais parte|\
        saiu da empresa|deixou a empresa|nao cuido|outro departamento|fale com|\
        entre em contato com|procure o|procure a|yanlis kisi*|yanlis adres*|dogru kisi degilim|\
        yetkili degilim|yetkili kisi degilim|sorumlu degilim|ilgili kisi degilim|\
        muhatap degilim|artik burada|artik calismiyor|sirketten ayrildi|ile iletisime gec*|\
        ilgili birim*|ilgili departman*",
    ),
    (
        Intent::NotInterested,
        "\
        not interested|no thanks|no thank you|not now|not right now|not at this time|\
        not at the moment|not a priority|not a fit|not a good fit|not the right fit|not for us|\
        not looking|not in the market|not open to|not keen|no need|dont need|do not need|\
        we are all set|were all set|already have|already use|already using|already work with|\
        already working with|pass on this|ill pass|well pass|going to pass|no budget|\
        dont have the budget|dont have budget|dont have time|no time|not relevant|\
        no longer interested|lost interest|maybe later|not this quarter|not this year|\
        nao obrigad*|agora nao|no momento nao|por enquanto nao|nao e o momento|nao e prioridade|\
        nao e uma prioridade|nao precisamos|nao preciso|ja temos|ja utilizamos|ja usamos|\
        ja possuimos|ja trabalhamos com|nao faz sentido|dispenso|sem tempo|nao tenho tempo|\
        sem orcamento|sem budget|obrigad* mas nao|nao estamos buscando|nao estamos procurando|\
        nao se aplica|ilgilenmiyo*|ilgilenmeyiz|ilgilenmem|ilgimizi cekmedi|ilgimizi cekmiyor|\
        ilgimi cekmedi|ilgimi cekmiyor|ilginc degil|ihtiyacimiz yok|ihtiyacim yok|\
        ihtiyac duymuyoruz|gerek yok|gerek gormuyoruz|istemiyoruz|istemiyorum|dusunmuyoruz|\
        dusunmuyorum|su an icin degil|simdilik degil|simdilik hayir|hayir tesekkur*|\
        zaten kullan*|zaten calis*|zaten bir cozum*|uygun degil|planimizda yok|butcemiz yok|\
        butce yok|vaktim yok|zamanim yok|olmaz",
    ),
    (
        Intent::MeetingRequest,
        "\
        schedule a call|schedule a meeting|schedule time|schedule some time|book a call|\
        book a meeting|book a time|book some time|book time|set up a call|set up a meeting|\
        set up a time|set up time|setup a call|arrange a call|arrange a meeting|hop on a call|\
        jump on a call|get on a call|a call|a meeting|meeting|a quick chat|a demo|demo|call me|\
        happy to chat|happy to talk|happy to connect|happy to meet|works for me|\
        lets talk|lets chat|lets meet|lets connect|lets schedule|lets book|can we meet|\
        could we meet|find a time|find time|calendar link|calendar invite|your calendar|\
        my calendar|calendly|send me a time|send me some times|send over some times|\
        what time works|what times work|when are you available|when are you free|are you free|\
        available for a call|free for a call|zoom|google meet|marcar uma|marcar reuniao|\
        vamos marcar|podemos marcar|agendar|agendamos|agende|uma call|uma reuniao|reuniao|\
        uma conversa|um papo|bater um papo|uma ligacao|uma videochamada|uma demo|demonstracao|\
        me liga|pode me ligar|podemos conversar|vamos conversar|podemos falar|\
        link da sua agenda|sua agenda|qual horario|que horario|horario* disponive*|\
        toplanti ayarla*|toplanti yap*|toplanti planla*|gorusme ayarla*|gorusme yap*|\
        gorusme planla*|bir toplanti|bir gorusme|toplanti|goruselim|gorusebilir*|\
        gorusmek isteri*|takvim linki*|takviminiz*|musait misiniz|musaitsiniz|ne zaman musait*|\
        musait oldugunuz|uygun oldugunuz|uygun bir zaman|arayabilir*|beni arayin",
    ),
    (
        Intent::Interested,
        "\
        sounds interesting|sounds good|sounds great|looks interesting|im interested|\
        we are interested|were interested|tell me more|learn more|more info|more information|\
        more details|send me|send over|send it over|please send|please share|id love to|\
        would love to|keen to|open to|count me in|yes please|makes sense|tenho interesse|\
        temos interesse|me interessa|nos interessa|quero saber mais|saber mais|mais informac*|\
        mais detalhes|mais info|me conta mais|pode mandar|pode enviar|pode me mandar|\
        pode me enviar|me envie|me manda|conhecer melhor|quero conhecer|gostaria de conhecer|\
        gostei|parece bom|parece otimo|faz sentido|vamos sim|com certeza|sim por favor|\
        ilgileniyorum|ilgileniyoruz|ilgilenirim|ilgileniriz|ilgilenebilir*|ilgimi cekti|\
        ilgimizi cekti|ilginc|ilgi cekici|daha fazla bilgi|detayli bilgi|bilgi almak|\
        bilgi alabilir*|bilgi gonder*|detaylari|kulaga iyi|kulaga guzel|guzel gorunuyor|\
        mantikli|evet lutfen|memnuniyetle|neden olmasin",
    ),
    (
        Intent::Question,
        "\
        how much|how does|how do|how is|what is|whats|what are|which|can you share|\
        could you share|can you explain|could you explain|do you|does it|is it|is there|are you|\
        pricing|price*|cost|costs|wondering|curious|quanto*|qual o|qual e|quais|como funciona|\
        voces tem|voces fazem|gostaria de saber|poderia explicar|preco*|valores|orcamento|\
        ne kadar|fiyat*|ucret*|maliyet*|nasil|nedir|neler|hangi|var mi|mi|mu|misin*|musun*|\
        miyi*|midir|mudur",
    ),
];

/// Words carrying "interest"; negated -> NotInterested, plain -> Interested
/// (except bare "interest": "thanks for your interest" is not a signal).
const INTEREST_WORDS: &str = "\
    interest|interested|interesting|interessado|interessada|interessados|interessadas|\
    interesse|interessa|interessante";
/// Negators looked for up to 3 words before an interest word ("no": 2 words).
const NEGATORS: &str = "\
    not|dont|never|nao|sem|nem|isnt|arent|doesnt|didnt|wont|wouldnt|nothing|nenhum|nenhuma|\
    zero";
/// Contrast words end the negation look-back ("not sure, but interested").
const CONTRAST: &str = "but|however|mas|porem|ama|fakat";
/// Whole replies that are an unsubscribe on their own.
const BARE_UNSUBSCRIBE: &str = "stop|remove|pare|sair|cancelar|iptal|dur";
const GREETINGS: &str = "\
    hi|hello|hey|dear|hiya|ola|oi|prezado|prezada|caro|cara|merhaba|selam|sayin|gunaydin";
const GREETING_PAIRS: &str = "\
    good morning|good afternoon|bom dia|boa tarde|boa noite|iyi gunler|iyi calismalar";
const HEADER_NEXT: &str = "\
    sent:|date:|to:|subject:|enviado:|enviada em:|data:|para:|assunto:|gönderildi:|\
    gönderilme tarihi:|tarih:|kime:|konu:";

impl Intent {
    /// snake_case name, stable for storage and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Interested => "interested",
            Intent::MeetingRequest => "meeting_request",
            Intent::Question => "question",
            Intent::NotInterested => "not_interested",
            Intent::Unsubscribe => "unsubscribe",
            Intent::OutOfOffice => "out_of_office",
            Intent::WrongPerson => "wrong_person",
            Intent::Unknown => "unknown",
        }
    }

    /// True for Interested and MeetingRequest (these move a deal to "Qualified").
    pub fn qualifies_lead(self) -> bool {
        matches!(self, Intent::Interested | Intent::MeetingRequest)
    }

    /// Classifies a reply body (quoted history is ignored). The subject is only
    /// used to detect auto-replies ("Automatic reply", "Otomatik yanıt", ...).
    pub fn classify(text: &str, subject: Option<&str>) -> Intent {
        let body = strip_quoted(text);
        let tokens = tokenize(body);
        let subject_tokens = subject.map(tokenize).unwrap_or_default();
        let (negated_interest, plain_interest) = interest_signal(&tokens);
        for &(intent, patterns) in RULES {
            let extra = match intent {
                Intent::Unsubscribe => tokens.len() == 1 && listed(BARE_UNSUBSCRIBE, &tokens[0]),
                Intent::OutOfOffice => any_phrase(&subject_tokens, patterns),
                Intent::NotInterested => negated_interest,
                Intent::Interested => plain_interest,
                Intent::Question => has_question_mark(body),
                _ => false,
            };
            if extra || any_phrase(&tokens, patterns) {
                return intent;
            }
        }
        Intent::Unknown
    }
}

/// Folds one lowercased char; `None` drops it (apostrophes, hyphens, dot above).
fn fold(c: char) -> Option<char> {
    Some(match c {
        'ı' | 'í' | 'ì' | 'î' | 'ï' => 'i',
        'ğ' => 'g',
        'ş' | 'ș' => 's',
        'ç' => 'c',
        'ö' | 'ó' | 'ò' | 'ô' | 'õ' => 'o',
        'ü' | 'ú' | 'ù' | 'û' => 'u',
        'ã' | 'á' | 'â' | 'à' | 'ä' => 'a',
        'é' | 'ê' | 'è' | 'ë' => 'e',
        '\'' | '’' | '‘' | '`' | '´' | '-' | '‐' | '‑' | '\u{307}' => return None,
        other => other,
    })
}

/// Normalised word tokens (see module docs), at most [`MAX_TOKENS`].
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for folded in text.chars().flat_map(char::to_lowercase).filter_map(fold) {
        if folded.is_alphanumeric() {
            word.push(folded);
        } else if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
            if tokens.len() == MAX_TOKENS {
                return tokens;
            }
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

fn word_matches(pattern: &str, token: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => token.starts_with(prefix),
        None => token == pattern,
    }
}

/// True when the space-separated `phrase` occurs as consecutive whole tokens.
fn contains_phrase(tokens: &[String], phrase: &str) -> bool {
    let len = phrase.split(' ').count();
    tokens.windows(len).any(|window| {
        window
            .iter()
            .zip(phrase.split(' '))
            .all(|(t, p)| word_matches(p, t))
    })
}

fn any_phrase(tokens: &[String], phrases: &str) -> bool {
    phrases
        .split('|')
        .any(|phrase| contains_phrase(tokens, phrase))
}

/// True when `word` is one of the `|`-separated entries of `list`.
fn listed(list: &str, word: &str) -> bool {
    list.split('|').any(|entry| entry == word)
}

/// `(negated, plain)`: whether some interest word is negated / not negated.
fn interest_signal(tokens: &[String]) -> (bool, bool) {
    let (mut negated, mut plain) = (false, false);
    for (i, token) in tokens.iter().enumerate() {
        if !listed(INTEREST_WORDS, token) {
            continue;
        }
        let is_negated = tokens[i.saturating_sub(3)..i]
            .iter()
            .rev()
            .enumerate()
            .take_while(|(_, t)| !listed(CONTRAST, t))
            .any(|(k, t)| listed(NEGATORS, t) || (k < 2 && t == "no"));
        if is_negated {
            negated = true;
        } else if token != "interest" {
            plain = true;
        }
    }
    (negated, plain)
}

/// A '?' ending a clause (so `https://x.io/?a=1` does not count).
fn has_question_mark(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?'
            && chars
                .peek()
                .is_none_or(|n| n.is_whitespace() || matches!(n, ')' | '"' | '\'' | '?' | '!'))
        {
            return true;
        }
    }
    false
}

fn is_attribution_end(lower: &str) -> bool {
    ["wrote:", "escreveu:", "yazdı:", "yazdi:"]
        .iter()
        .any(|end| lower.ends_with(end))
}

fn is_attribution_start(lower: &str) -> bool {
    lower.starts_with("on ") || lower.starts_with("em ") || lower.contains("tarihinde")
}

/// `-----Original Message-----`, `----- Mensagem original -----`, Outlook's `_____`
/// rule, or the `-- ` signature delimiter.
fn is_separator(trimmed: &str) -> bool {
    let dashed = trimmed.starts_with("---")
        && trimmed.ends_with("---")
        && trimmed.chars().any(char::is_alphabetic);
    let rule = trimmed.len() >= 10 && trimmed.chars().all(|c| c == '_');
    dashed || rule || trimmed == "--"
}

/// An Outlook-style header block: `From:`/`De:`/`Kimden:` followed by `Sent:`/`Para:`/`Tarih:` ...
fn is_header_block(lower: &str, next: &[&str]) -> bool {
    ["from:", "de:", "kimden:"]
        .iter()
        .any(|p| lower.starts_with(p))
        && next
            .iter()
            .filter(|l| !l.trim().is_empty())
            .take(3)
            .any(|l| {
                let l = l.trim().to_lowercase();
                HEADER_NEXT.split('|').any(|h| l.starts_with(h))
            })
}

/// The reply without quoted history, trimmed. Leading `>` lines are skipped;
/// the reply then ends at the first `>` line, attribution line (`On … wrote:`,
/// `Em … escreveu:`, `… tarihinde … yazdı:`, also when wrapped over two lines),
/// separator (`-----Original Message-----`, `____`, `-- `) or `From:/Sent:` header block.
pub fn strip_quoted(text: &str) -> &str {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let (mut start, mut end, mut pos) = (0, text.len(), 0);
    let mut leading = true;
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        let line_start = pos;
        pos += line.len();
        if leading && (trimmed.is_empty() || trimmed.starts_with('>')) {
            start = pos;
            continue;
        }
        leading = false;
        let lower = trimmed.to_lowercase();
        if trimmed.starts_with('>')
            || is_separator(trimmed)
            || is_header_block(&lower, &lines[i + 1..])
        {
            end = line_start;
            break;
        }
        if is_attribution_end(&lower) {
            let prev = (i > 0).then(|| lines[i - 1].trim().to_lowercase());
            end = match prev {
                Some(p)
                    if !is_attribution_start(&lower)
                        && is_attribution_start(&p)
                        && line_start > start =>
                {
                    line_start - lines[i - 1].len()
                }
                _ => line_start,
            };
            break;
        }
    }
    text[start..end.max(start)].trim()
}

/// Short first line like "Hi John," / "Merhaba Ahmet Bey," / "Bom dia,".
fn is_greeting_line(line: &str) -> bool {
    let tokens = tokenize(line);
    let ends_ok = line.ends_with([',', ':', '!']) || line.ends_with(char::is_alphanumeric);
    let greeting = tokens.first().is_some_and(|t| listed(GREETINGS, t))
        || (tokens.len() >= 2 && listed(GREETING_PAIRS, &format!("{} {}", tokens[0], tokens[1])));
    ends_ok && greeting && tokens.len() <= 4
}

/// One-line summary: the first sentence of the reply after [`strip_quoted`]
/// (a leading salutation such as "Hi John," or "Olá!" is skipped when more
/// text follows). A sentence ends at `.`, `!` or `?` followed by whitespace or end,
/// or at a newline. Whitespace is collapsed; the result has at most 200 chars,
/// and when cut it ends with `…` (199 chars + `…`, cut on a char boundary).
pub fn summarize(text: &str) -> String {
    let (mut sentence, rest) = first_sentence(strip_quoted(text));
    if is_greeting_line(sentence) && !rest.is_empty() {
        sentence = first_sentence(rest).0;
    }
    let sentence = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    if sentence.chars().count() <= SUMMARY_MAX_CHARS {
        return sentence;
    }
    let mut cut: String = sentence.chars().take(SUMMARY_MAX_CHARS - 1).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

/// Splits off the first sentence (see [`summarize`]); both parts trimmed.
fn first_sentence(body: &str) -> (&str, &str) {
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
            let end = if c == '\n' { i } else { i + c.len_utf8() };
            return (body[..end].trim(), body[end..].trim());
        }
    }
    (body.trim(), "")
}

#[cfg(test)]
mod tests;
