//! Table-driven tests with real-looking replies in English, Turkish and Portuguese.
use super::Intent::*;
use super::*;

fn assert_table(cases: &[(&str, Intent)]) {
    for &(text, expected) in cases {
        assert_eq!(Intent::classify(text, None), expected, "reply: {text:?}");
    }
}

#[test]
fn english_replies_are_classified() {
    assert_table(&[
        (
            "Sounds interesting, tell me more about how it works.",
            Interested,
        ),
        (
            "I'm interested! What does onboarding look like?",
            Interested,
        ),
        (
            "Sure, let's schedule a call next week. Does Tuesday work?",
            MeetingRequest,
        ),
        (
            "Send me your calendar link and I'll grab a slot.",
            MeetingRequest,
        ),
        (
            "Yes, happy to chat. How about Thursday 2pm?",
            MeetingRequest,
        ),
        ("How much does this cost per seat?", Question),
        ("Does it integrate with Salesforce", Question),
        (
            "Thanks, but we're not interested at this time.",
            NotInterested,
        ),
        (
            "Not really interested, we already have a vendor.",
            NotInterested,
        ),
        ("We don't have any interest in this.", NotInterested),
        ("Please unsubscribe me from this list.", Unsubscribe),
        ("Stop emailing me.", Unsubscribe),
        ("STOP", Unsubscribe),
        (
            "I am out of office until March 3rd with limited access to email.",
            OutOfOffice,
        ),
        (
            "John no longer works here. Please reach out to Maria instead.",
            WrongPerson,
        ),
        (
            "I'm not the right person for this, try our CTO.",
            WrongPerson,
        ),
        ("Thanks for reaching out.", Unknown),
        ("", Unknown),
    ]);
}

#[test]
fn turkish_replies_are_classified() {
    assert_table(&[
        (
            "Merhaba, ilgileniyorum. Detayları paylaşabilir misiniz?",
            Interested,
        ),
        ("İlgimi çekti, biraz daha bilgi alabilir miyim?", Interested),
        ("Önümüzdeki hafta bir toplantı ayarlayalım.", MeetingRequest),
        (
            "Bu hafta görüşme yapalım, hangi gün müsaitsiniz?",
            MeetingRequest,
        ),
        ("Fiyatlandırma ne kadar?", Question),
        ("Entegrasyon nasıl çalışıyor?", Question),
        ("Teşekkürler, şu an için ilgilenmiyoruz.", NotInterested),
        ("İhtiyacımız yok, teşekkürler.", NotInterested),
        ("Lütfen beni listeden çıkarın.", Unsubscribe),
        ("Bir daha mail atmayın.", Unsubscribe),
        (
            "Şu anda ofis dışındayım, 10 Mart'ta döneceğim.",
            OutOfOffice,
        ),
        (
            "Yıllık izindeyim, acil işler için Ayşe Hanım ile iletişime geçin.",
            OutOfOffice,
        ),
        (
            "Yanlış kişiye ulaştınız, Ahmet Bey artık burada çalışmıyor.",
            WrongPerson,
        ),
        ("Teşekkürler.", Unknown),
    ]);
}

#[test]
fn portuguese_replies_are_classified() {
    assert_table(&[
        ("Tenho interesse, pode me mandar mais detalhes?", Interested),
        ("Me interessa sim, parece muito interessante.", Interested),
        (
            "Podemos marcar uma reunião na quinta-feira?",
            MeetingRequest,
        ),
        (
            "Vamos agendar uma call para semana que vem.",
            MeetingRequest,
        ),
        ("Quanto custa o plano anual?", Question),
        ("Como funciona a integração com o HubSpot?", Question),
        ("Não tenho interesse, obrigado.", NotInterested),
        ("Sem interesse no momento.", NotInterested),
        ("Por favor, me remova da lista.", Unsubscribe),
        ("Não quero receber mais e-mails.", Unsubscribe),
        (
            "Estou de férias até o dia 15 e retorno no dia 16.",
            OutOfOffice,
        ),
        ("Estou fora do escritório esta semana.", OutOfOffice),
        ("O Carlos não trabalha mais aqui.", WrongPerson),
        (
            "Acho que você falou com a pessoa errada, eu cuido do financeiro.",
            WrongPerson,
        ),
        ("Obrigado!", Unknown),
    ]);
}

#[test]
fn negation_beats_interest_in_every_language() {
    assert_table(&[
        ("not interested", NotInterested),
        ("No interest, sorry.", NotInterested),
        ("I'm not really interested in this.", NotInterested),
        (
            "Honestly not that interesting for us, send me pricing.",
            NotInterested,
        ),
        ("We're not open to new vendors.", NotInterested),
        ("não tenho interesse", NotInterested),
        ("Não estamos interessados.", NotInterested),
        ("Isso não me interessa.", NotInterested),
        ("sem interesse", NotInterested),
        ("ilgilenmiyorum", NotInterested),
        ("İLGİLENMİYORUZ, teşekkürler", NotInterested),
    ]);
}

#[test]
fn contrast_word_ends_negation_so_interest_survives() {
    assert_table(&[
        ("I'm not sure yet, but I'm interested.", Interested),
        ("Não sei ainda, mas estou interessado.", Interested),
        ("No, interested", NotInterested),
    ]);
}

#[test]
fn quoted_history_is_ignored_for_classification() {
    let reply = "Thanks, not now.\n\nOn Mon, Jan 5, 2026 at 9:00 AM Ana <a@b.io> wrote:\n\
                 > Hi Bob, would your team be interested? Let's schedule a call!\n";
    assert_eq!(
        Intent::classify(reply, Some("Re: Quick idea")),
        NotInterested
    );
    let pt = "Agora não.\n\nEm seg., 5 de jan. de 2026, Ana <a@b.io> escreveu:\n> Interesse?";
    assert_eq!(Intent::classify(pt, None), NotInterested);
    let only_quote = "Ok.\n> Interested in a demo? Unsubscribe here.";
    assert_eq!(Intent::classify(only_quote, None), Unknown);
}

#[test]
fn out_of_office_is_detected_from_the_subject() {
    let body = "I will respond to your message when I can.";
    assert_eq!(Intent::classify(body, None), Unknown);
    for subject in [
        "Automatic reply: Quick idea",
        "Out of Office: Re: Hello",
        "Otomatik yanıt: Merhaba",
        "Resposta automática: Olá",
    ] {
        assert_eq!(
            Intent::classify(body, Some(subject)),
            OutOfOffice,
            "{subject}"
        );
    }
    // Other intents are never read from the subject (it repeats our pitch).
    assert_eq!(
        Intent::classify("Thanks.", Some("Re: interested in a demo?")),
        Unknown
    );
    // An explicit unsubscribe in the body still wins over an auto-reply subject.
    assert_eq!(
        Intent::classify("Unsubscribe", Some("Automatic reply")),
        Unsubscribe
    );
}

#[test]
fn priority_order_is_the_documented_one() {
    let order: Vec<Intent> = RULES.iter().map(|(intent, _)| *intent).collect();
    let documented = [
        Unsubscribe,
        OutOfOffice,
        WrongPerson,
        NotInterested,
        MeetingRequest,
        Interested,
        Question,
    ];
    assert_eq!(order, documented);
    let both = "I'm interested, let's book a meeting. Price?";
    assert_eq!(Intent::classify(both, None), MeetingRequest);
    assert_eq!(
        Intent::classify("Interested! How much is it?", None),
        Interested
    );
    assert_eq!(
        Intent::classify("Not interested, remove me.", None),
        Unsubscribe
    );
    assert_eq!(
        Intent::classify("No thanks, no time for a call.", None),
        NotInterested
    );
}

#[test]
fn words_match_on_boundaries_only() {
    assert_eq!(
        Intent::classify("The demolition crew knows nothing.", None),
        Unknown
    );
    assert_eq!(Intent::classify("Can I see a demo", None), MeetingRequest);
    assert_eq!(Intent::classify("Stopwatch", None), Unknown);
    assert_eq!(
        Intent::classify("See https://acme.io/?ref=1 for notes", None),
        Unknown
    );
    assert_eq!(Intent::classify("Anything else?", None), Question);
}

#[test]
fn every_pattern_is_normalised_and_non_empty() {
    let rules = RULES.iter().flat_map(|(_, p)| p.split('|'));
    for pattern in rules.chain(GREETING_PAIRS.split('|')) {
        let plain: Vec<&str> = pattern
            .split(' ')
            .map(|w| w.trim_end_matches('*'))
            .collect();
        assert!(plain.iter().all(|w| !w.is_empty()), "pattern {pattern:?}");
        assert_eq!(tokenize(&plain.join(" ")), plain, "pattern {pattern:?}");
    }
}

#[test]
fn tokenizer_folds_turkish_and_portuguese() {
    let tokens = tokenize("İLGİMİ Çekti, NÃO é possível! I'm e-mail");
    assert_eq!(
        tokens,
        ["ilgimi", "cekti", "nao", "e", "possivel", "im", "email"]
    );
    assert_eq!(tokenize("ığüşöç ãáâàéêíóôõú"), ["igusoc", "aaaaeeiooou"]);
}

#[test]
fn names_and_qualification_are_stable() {
    let all = [
        (Interested, "interested", true),
        (MeetingRequest, "meeting_request", true),
        (Question, "question", false),
        (NotInterested, "not_interested", false),
        (Unsubscribe, "unsubscribe", false),
        (OutOfOffice, "out_of_office", false),
        (WrongPerson, "wrong_person", false),
        (Unknown, "unknown", false),
    ];
    for (intent, name, qualifies) in all {
        assert_eq!(intent.as_str(), name);
        assert_eq!(intent.qualifies_lead(), qualifies, "{name}");
    }
}

#[test]
fn summarize_takes_the_first_sentence() {
    assert_eq!(
        summarize("Sounds good!  Let's talk next week. Cheers"),
        "Sounds good!"
    );
    assert_eq!(
        summarize("Version 2.0 looks great. Thanks"),
        "Version 2.0 looks great."
    );
    assert_eq!(
        summarize("Could you send pricing? Thanks"),
        "Could you send pricing?"
    );
    let greeted = "Hi John,\nWe are   not interested right now. Thanks.";
    assert_eq!(summarize(greeted), "We are not interested right now.");
    assert_eq!(
        summarize("Merhaba Ahmet Bey,\n\nİlgileniyoruz. Görüşelim."),
        "İlgileniyoruz."
    );
    assert_eq!(
        summarize("Olá João,\nTenho interesse! Abraço"),
        "Tenho interesse!"
    );
    let salutation = "Olá! Gostaria de saber mais. Abraço";
    assert_eq!(summarize(salutation), "Gostaria de saber mais.");
    assert_eq!(summarize("Hi John, not now. Thanks"), "Hi John, not now.");
}

#[test]
fn summarize_stops_at_a_newline() {
    assert_eq!(summarize("  Yes please\nsend the deck"), "Yes please");
    let crlf = "Thanks, not now\r\n\r\nOn Mon, Bob <b@x.io> wrote:\r\n> pitch";
    assert_eq!(summarize(crlf), "Thanks, not now");
}

#[test]
fn summarize_truncates_on_a_char_boundary() {
    let cut = summarize(&"ç".repeat(250));
    assert_eq!(cut.chars().count(), 200);
    assert_eq!(cut, format!("{}…", "ç".repeat(199)));
    let exact = "ş".repeat(200);
    assert_eq!(summarize(&exact), exact);
    // A cut landing on a space does not leave "word …".
    let spaced = format!("{} {}", "a".repeat(198), "b".repeat(10));
    assert_eq!(summarize(&spaced), format!("{}…", "a".repeat(198)));
}

#[test]
fn summarize_of_empty_or_quoted_only_input_is_empty() {
    assert_eq!(summarize(""), "");
    assert_eq!(summarize("   \n\t "), "");
    assert_eq!(summarize("> only quoted text\n> more"), "");
}

#[test]
fn strip_quoted_handles_english_headers() {
    let gmail = "Let's talk Tuesday.\n\nOn Mon, Jan 5, 2026 at 10:00 AM Ana <\na@b.io> wrote:\n> x";
    assert_eq!(strip_quoted(gmail), "Let's talk Tuesday.");
    let one_line = "Yes!\nOn Mon, Jan 5, 2026, Ana <ana@acme.io> wrote:\n> pitch";
    assert_eq!(strip_quoted(one_line), "Yes!");
    let outlook = "Not now.\r\n\r\n-----Original Message-----\r\nFrom: Ana\r\ninterested?";
    assert_eq!(strip_quoted(outlook), "Not now.");
    let header = "Call me.\n\nFrom: Ana Lima <ana@acme.io>\nSent: Monday, January 5\nTo: Bob";
    assert_eq!(strip_quoted(header), "Call me.");
    let inline = "> Would you be interested?\nYes, tell me more.\n> Best, Ana";
    assert_eq!(strip_quoted(inline), "Yes, tell me more.");
    assert_eq!(strip_quoted("  plain reply  "), "plain reply");
}

#[test]
fn strip_quoted_handles_portuguese_headers() {
    let gmail =
        "Tenho interesse.\n\nEm seg., 5 de jan. de 2026 às 10:00, Ana <a@b.io> escreveu:\n>";
    assert_eq!(strip_quoted(gmail), "Tenho interesse.");
    let outlook = "Agora não.\n\nDe: Ana Lima <ana@acme.io>\nEnviado: segunda-feira\nPara: Bob";
    assert_eq!(strip_quoted(outlook), "Agora não.");
    let separator = "Sem interesse.\n----- Mensagem original -----\nVocê tem interesse?";
    assert_eq!(strip_quoted(separator), "Sem interesse.");
}

#[test]
fn strip_quoted_handles_turkish_headers() {
    let gmail =
        "İlgileniyoruz.\n\n5 Oca 2026 Pzt, 10:00 tarihinde Ana <a@b.io> şunu yazdı:\n> Merhaba";
    assert_eq!(strip_quoted(gmail), "İlgileniyoruz.");
    let wrapped =
        "Görüşelim.\n\n5 Oca 2026 Pzt, 10:00 tarihinde Ana Lima <\na@b.io> şunu yazdı:\n> x";
    assert_eq!(strip_quoted(wrapped), "Görüşelim.");
    let outlook = "Gerek yok.\n\nKimden: Ana Lima\nGönderildi: 5 Ocak 2026 Pazartesi\nKime: Bob";
    assert_eq!(strip_quoted(outlook), "Gerek yok.");
}
