//! Word and name lists the popup rules read, and whole-word phrase matching: the bottom
//! layer of [`crate::popup`] (it imports nothing from its siblings).

/// Words of consent banners (lower case; matched as substrings of the visible text).
pub const CONSENT_WORDS: [&str; 14] = [
    "cookie",
    "consent",
    "privacy",
    "gdpr",
    "datenschutz",
    "einwilligung",
    "your data",
    "personal data",
    "partners",
    "tracking",
    "privacidad",
    "confidentialité",
    "rgpd",
    "dsgvo",
];

/// Texts of controls that answer a consent question (lower case, word boundaries).
pub const ANSWER_WORDS: [&str; 44] = [
    // English
    "accept",
    "agree",
    "allow",
    "reject",
    "refuse",
    "decline",
    "disagree",
    "consent",
    "ok",
    "got it",
    "i agree",
    "yes",
    "settings",
    "preferences",
    "manage options",
    "customize",
    "customise",
    // German
    "akzeptieren",
    "zustimmen",
    "ablehnen",
    "zulassen",
    "erlauben",
    "einverstanden",
    "annehmen",
    "einstellungen",
    // French
    "accepter",
    "refuser",
    "accepte",
    "paramétrer",
    "personnaliser",
    // Spanish and Portuguese
    "aceptar",
    "acepto",
    "rechazar",
    "configurar",
    "aceitar",
    "rejeitar",
    // Italian
    "accetta",
    "accetto",
    "rifiuta",
    "impostazioni",
    // Dutch
    "accepteren",
    "akkoord",
    "weigeren",
    "instellingen",
];

/// Registrable domains of consent-management platforms (a frame from one of them, or a
/// subdomain, holds a consent message).
pub const CMP_HOSTS: [&str; 18] = [
    "privacy-mgmt.com",
    "consensu.org",
    "cookiebot.com",
    "cookielaw.org",
    "onetrust.com",
    "cookiepro.com",
    "trustarc.com",
    "truste.com",
    "didomi.io",
    "usercentrics.eu",
    "iubenda.com",
    "consentmanager.net",
    "cookieyes.com",
    "termly.io",
    "osano.com",
    "cookiefirst.com",
    "cookie-script.com",
    "fundingchoicesmessages.google.com",
];

/// Host or path tokens ([`crate::overlay::name_tokens`]) of a frame URL that name a consent message.
pub const CONSENT_URL_TOKENS: [&str; 8] = [
    "consent", "consents", "cmp", "privacy", "gdpr", "cookie", "cookies", "tcf",
];

/// Class or id token prefixes ([`crate::overlay::name_tokens`]) of consent banners: any token that starts
/// with one of these (`cookiebanner`, `cmplz`, `gdpr`).
pub const CONSENT_MARKUP_PREFIXES: [&str; 4] = ["cookie", "consent", "gdpr", "cmp"];
/// Class or id tokens consent platforms give their containers.
pub const CONSENT_MARKUP_TOKENS: [&str; 11] = [
    "onetrust",
    "optanon",
    "didomi",
    "usercentrics",
    "iubenda",
    "truste",
    "trustarc",
    "borlabs",
    "osano",
    "termly",
    "tcf",
];

/// Registrable domains of mailing-list services whose sign-up forms are embedded as frames.
pub const MAIL_HOSTS: [&str; 9] = [
    "list-manage.com",
    "klaviyo.com",
    "substack.com",
    "mailerlite.com",
    "convertkit.com",
    "sibforms.com",
    "beehiiv.com",
    "buttondown.email",
    "mailchi.mp",
];

/// Host or path tokens of a frame URL that name a sign-up form.
pub const MAIL_URL_TOKENS: [&str; 6] = [
    "newsletter",
    "newsletters",
    "subscribe",
    "signup",
    "optin",
    "mailinglist",
];

/// Words of sign-up popups (lower case; matched as substrings of the visible text).
pub const NEWSLETTER_WORDS: [&str; 16] = [
    "newsletter",
    "subscribe",
    "sign up",
    "signup",
    "mailing list",
    "inbox",
    "weekly digest",
    "abonnieren",
    "anmelden",
    "suscríbete",
    "suscribirse",
    "boletín",
    "abonnez",
    "inscrivez",
    "iscriviti",
    "nieuwsbrief",
];

/// Words of login and account prompts (lower case, word boundaries).
pub const LOGIN_WORDS: [&str; 6] = [
    "sign in",
    "log in",
    "login",
    "signin",
    "einloggen",
    "connexion",
];

/// Labels that mark an advertisement (whole words or phrases, lower case).
pub const AD_LABELS: [&str; 25] = [
    "advertisement",
    "sponsored",
    "promoted",
    "ad choices",
    "adchoices",
    "skip ad",
    "close ad",
    "anzeige",
    "werbung",
    "gesponsert",
    "publicidad",
    "publicidade",
    "publicité",
    "sponsorisé",
    "pubblicità",
    "reclame",
    "advertentie",
    "gesponsord",
    "annons",
    "annonse",
    "reklama",
    "reklam",
    "реклама",
    "広告",
    "광고",
];

/// Markup of ad slots: tokens ([`crate::overlay::name_tokens`]) of a class or id, and attributes that ad
/// tags put on their slots.
pub const AD_SLOT_TOKENS: [&str; 3] = ["adsbygoogle", "gpt", "adslot"];
/// Attributes ad tags put on their slots (see [`AD_SLOT_TOKENS`]).
pub const AD_SLOT_ATTRIBUTES: [&str; 4] = [
    "data-ad-client",
    "data-ad-slot",
    "data-ad-unit-path",
    "data-google-query-id",
];

/// The words of `text`: maximal runs of alphanumeric characters.
pub fn words_of(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// True when `phrase` (one or more words) occurs in `words` on word boundaries.
pub fn has_phrase(words: &[&str], phrase: &str) -> bool {
    if phrase.contains(' ') {
        let wanted = words_of(phrase);
        !wanted.is_empty() && words.windows(wanted.len()).any(|w| w == wanted.as_slice())
    } else {
        words.contains(&phrase)
    }
}
