//! Page chrome (issue 15 item 4): fixed or sticky boxes that are the page's own controls, not
//! popups, even when [`crate::overlay::overlay_flags`] takes them for overlays.
//!
//! A subtree is **page chrome** when it holds a chrome signal and no popup signal.
//!
//! Chrome signals (what the page itself offers, [`ChromeSignals`]):
//! - **commerce**: a control whose text, `value` or `aria-label` adds to a cart or buys
//!   ([`CART_PHRASES`], 16 languages); a `<form>` whose `action` path names a cart or checkout
//!   ([`CART_TOKENS`]); a class, id or `name` with a cart token; schema.org offer markup
//!   (`itemprop` `offers` / `price` / `priceCurrency` / `sku` / `availability`, an `itemtype` of
//!   `schema.org/Offer` or `/Product`, `data-product-id` / `data-variant-id` / `data-sku`);
//!   or a variant or quantity field ([`VARIANT_TOKENS`], `type=number`) next to a price (a
//!   currency sign or code beside digits). A price alone is not commerce: paywalls and
//!   donation appeals show prices too.
//! - **sharing**: two or more links or buttons to share endpoints ([`SHARE_ENDPOINTS`]) or
//!   carrying `data-network` / `data-share`;
//! - **table of contents**: three or more in-page `#fragment` links making up at least half
//!   of the links;
//! - **back to top**: a control labelled so ([`TOP_PHRASES`]) or linking to `#top`;
//! - **video player**: a `<video>` or a frame from a video host ([`VIDEO_HOSTS`]);
//! - **site search and landmarks**: `role="search"`, a `type=search` field, `role="banner"` /
//!   `"contentinfo"` or a `<footer>`.
//!
//! Popup signals (any one keeps the box a popup, [`PopupSignals`]): dialog semantics
//! ([`crate::overlay::is_dialog`]); an e-mail or password field; consent, sign-up,
//! subscription, login or advertisement words in the visible text or an `aria-label`
//! ([`super::lexicon`]); ad-slot markup; a frame naming a consent message or a sign-up form
//! ([`super::evidence::frame_evidence`]); a media or frame URL of an ad server
//! ([`AD_URL_TOKENS`]). So a sticky add-to-cart bar is chrome, an ad with a "buy now" button
//! or a coupon sign-up that mentions the cart is not.

use super::evidence::frame_evidence;
use super::lexicon::{
    AD_LABELS, AD_SLOT_ATTRIBUTES, AD_SLOT_TOKENS, CONSENT_WORDS, LOGIN_WORDS, NEWSLETTER_WORDS,
    has_phrase, words_of,
};
use crate::layout::{LayoutObject, LayoutSnapshot, NodeKind};
use crate::overlay::{is_dialog, name_tokens};

/// Control texts that add to a cart, buy or check out (lower case; whole words, or
/// substrings for phrases in scripts without spaces).
pub const CART_PHRASES: [&str; 44] = [
    "add to cart",
    "add to bag",
    "add to basket",
    "buy now",
    "checkout",
    "check out",
    "in den warenkorb",
    "in den einkaufswagen",
    "jetzt kaufen",
    "zur kasse",
    "ajouter au panier",
    "acheter maintenant",
    "commander",
    "añadir al carrito",
    "agregar al carrito",
    "añadir a la cesta",
    "comprar ahora",
    "aggiungi al carrello",
    "compra ora",
    "acquista ora",
    "in winkelwagen",
    "toevoegen aan winkelwagen",
    "nu kopen",
    "adicionar ao carrinho",
    "comprar agora",
    "dodaj do koszyka",
    "kup teraz",
    "do košíku",
    "koupit",
    "lägg i varukorgen",
    "köp nu",
    "læg i kurv",
    "sepete ekle",
    "hemen al",
    "в корзину",
    "купить",
    "kosárba",
    "カートに入れる",
    "カートに追加",
    "今すぐ購入",
    "加入购物车",
    "立即购买",
    "장바구니",
    "구매하기",
];

/// Class, id, `name` or form-action path tokens ([`name_tokens`]) of carts and checkouts.
pub const CART_TOKENS: [&str; 16] = [
    "cart",
    "basket",
    "checkout",
    "addtocart",
    "minicart",
    "atc",
    "warenkorb",
    "kasse",
    "panier",
    "carrito",
    "cesta",
    "carrello",
    "winkelwagen",
    "koszyk",
    "varukorg",
    "sepet",
];

/// `name` or id tokens of a product's variant or quantity field.
pub const VARIANT_TOKENS: [&str; 24] = [
    "size", "sizes", "groesse", "größe", "grosse", "taille", "talla", "taglia", "maat", "rozmiar",
    "storlek", "beden", "variant", "variante", "color", "colour", "farbe", "couleur", "qty",
    "quantity", "menge", "anzahl", "quantite", "cantidad",
];

/// Share endpoints: a link's URL without scheme and `www.` starts with one of these.
pub const SHARE_ENDPOINTS: [&str; 16] = [
    "facebook.com/sharer",
    "facebook.com/share",
    "twitter.com/intent",
    "twitter.com/share",
    "x.com/intent",
    "linkedin.com/sharearticle",
    "linkedin.com/sharing",
    "pinterest.com/pin/create",
    "reddit.com/submit",
    "wa.me/",
    "api.whatsapp.com/send",
    "t.me/share",
    "telegram.me/share",
    "vk.com/share",
    "bsky.app/intent",
    "xing.com/spi/shares",
];

/// Labels of back-to-top controls (lower case, whole words or substrings as [`CART_PHRASES`]).
pub const TOP_PHRASES: [&str; 17] = [
    "back to top",
    "scroll to top",
    "to the top",
    "nach oben",
    "haut de page",
    "retour en haut",
    "volver arriba",
    "ir arriba",
    "torna su",
    "naar boven",
    "voltar ao topo",
    "do góry",
    "till toppen",
    "yukarı çık",
    "наверх",
    "ページトップ",
    "返回顶部",
];

/// Hosts (or parents of hosts) that serve video players.
pub const VIDEO_HOSTS: [&str; 9] = [
    "youtube.com",
    "youtube-nocookie.com",
    "vimeo.com",
    "dailymotion.com",
    "twitch.tv",
    "wistia.net",
    "jwplayer.com",
    "brightcove.net",
    "loom.com",
];

/// Host or path tokens of a media or frame URL that name an ad server or ad creative.
pub const AD_URL_TOKENS: [&str; 18] = [
    "ad",
    "ads",
    "adserver",
    "adsystem",
    "preroll",
    "vast",
    "vpaid",
    "imasdk",
    "doubleclick",
    "googlesyndication",
    "adnxs",
    "criteo",
    "taboola",
    "outbrain",
    "teads",
    "adform",
    "smartadserver",
    "mgid",
];

/// Words of subscription offers (paywalls), beyond [`NEWSLETTER_WORDS`] (lower case,
/// substrings).
const SUBSCRIPTION_WORDS: [&str; 9] = [
    "subscription",
    "subscriber",
    "abonnement",
    "abonnent",
    "suscripción",
    "abbonamento",
    "assinatura",
    "prenumer",
    "premium",
];

/// What the page itself offers in a subtree (module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChromeSignals {
    /// Cart or buy controls, cart forms and markup, offer markup.
    pub commerce: bool,
    /// Variant or quantity fields (commerce only next to a price).
    pub variant_field: bool,
    /// A price: a currency sign or code beside digits.
    pub price: bool,
    /// Links or buttons to share endpoints.
    pub share_links: usize,
    /// In-page `#fragment` links.
    pub fragment_links: usize,
    /// All links.
    pub links: usize,
    /// A back-to-top control.
    pub back_to_top: bool,
    /// A `<video>` or a video host's frame.
    pub video: bool,
    /// Site search or a banner / footer landmark.
    pub landmark: bool,
}

impl ChromeSignals {
    /// True when these signals make a subtree page chrome (module docs).
    pub fn is_chrome(&self) -> bool {
        self.commerce
            || (self.variant_field && self.price)
            || self.share_links >= 2
            || (self.fragment_links >= 3 && 2 * self.fragment_links >= self.links)
            || self.back_to_top
            || self.video
            || self.landmark
    }

    fn add(&mut self, child: &Self) {
        self.commerce |= child.commerce;
        self.variant_field |= child.variant_field;
        self.price |= child.price;
        self.share_links += child.share_links;
        self.fragment_links += child.fragment_links;
        self.links += child.links;
        self.back_to_top |= child.back_to_top;
        self.video |= child.video;
        self.landmark |= child.landmark;
    }
}

/// What makes a subtree a popup whatever chrome it holds (module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PopupSignals {
    /// Dialog semantics.
    pub dialog: bool,
    /// An e-mail or password field.
    pub fields: bool,
    /// Consent, sign-up, subscription, login or advertisement words.
    pub words: bool,
    /// Ad-slot markup or an ad server's media or frame URL.
    pub ad_markup: bool,
    /// A frame naming a consent message or a sign-up form.
    pub frame: bool,
}

impl PopupSignals {
    /// True when any signal is present.
    pub fn any(&self) -> bool {
        self.dialog || self.fields || self.words || self.ad_markup || self.frame
    }

    fn add(&mut self, child: &Self) {
        self.dialog |= child.dialog;
        self.fields |= child.fields;
        self.words |= child.words;
        self.ad_markup |= child.ad_markup;
        self.frame |= child.frame;
    }
}

/// True when `phrase` is in the lower-case `text` (whole words; a substring for phrases
/// outside ASCII, which covers scripts written without spaces).
fn mentions(text: &str, words: &[&str], phrase: &str) -> bool {
    has_phrase(words, phrase) || (!phrase.is_ascii() && text.contains(phrase))
}

/// True when the lower-case `text` has a price: a currency sign, or a currency code or
/// word, within two characters of a digit.
pub fn has_price(text: &str) -> bool {
    const SIGNS: [char; 9] = ['€', '$', '£', '¥', '₺', '₽', '₹', '₩', '円'];
    const CODES: [&str; 9] = ["eur", "usd", "gbp", "chf", "sek", "nok", "dkk", "kr", "zł"];
    let chars: Vec<char> = text.chars().collect();
    let digit_near = |at: usize, len: usize| {
        let from = at.saturating_sub(2);
        let to = (at + len + 2).min(chars.len());
        chars[from..to].iter().any(char::is_ascii_digit)
    };
    if chars
        .iter()
        .enumerate()
        .any(|(i, c)| SIGNS.contains(c) && digit_near(i, 1))
    {
        return true;
    }
    let words = words_of(text);
    CODES.iter().any(|code| {
        words.contains(code)
            && text.match_indices(code).any(|(byte, _)| {
                let at = text[..byte].chars().count();
                digit_near(at, code.chars().count())
            })
    })
}

fn host_is(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Host and path tokens of an absolute URL (none for relative or unparsable ones).
fn url_parts(src: &str) -> Option<(String, Vec<String>)> {
    let url = url::Url::parse(src.trim()).ok()?;
    let host = url.host_str().unwrap_or_default().to_lowercase();
    let tokens = name_tokens(&host)
        .into_iter()
        .chain(name_tokens(url.path()))
        .collect();
    Some((host, tokens))
}

fn is_share_link(href: &str) -> bool {
    let lower = href.trim().to_lowercase();
    if lower.starts_with("whatsapp://send") || lower.starts_with("mailto:?") {
        return true;
    }
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .or_else(|| lower.strip_prefix("//"));
    let Some(rest) = rest else { return false };
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    SHARE_ENDPOINTS.iter().any(|e| rest.starts_with(e))
}

fn is_control(object: &LayoutObject) -> bool {
    matches!(object.tag.as_str(), "a" | "button" | "label") || object.attr("role") == Some("button")
}

/// Signals of one element's own markup (not its subtree).
fn element_signals(
    object: &LayoutObject,
    base: Option<&url::Url>,
) -> (ChromeSignals, PopupSignals) {
    let mut chrome = ChromeSignals::default();
    let mut popup = PopupSignals::default();
    let attr = |k: &str| object.attr(k);
    let lower_attr = |k: &str| attr(k).map(str::to_lowercase);
    let tag = object.tag.as_str();
    let input_type = lower_attr("type").unwrap_or_default();
    let tokens: Vec<String> = [attr("class"), attr("id"), attr("name")]
        .into_iter()
        .flatten()
        .flat_map(name_tokens)
        .collect();
    let has_token = |list: &[&str]| tokens.iter().any(|t| list.contains(&t.as_str()));

    popup.dialog = is_dialog(object);
    popup.fields = tag == "input"
        && (matches!(input_type.as_str(), "email" | "password")
            || ["name", "id", "placeholder", "autocomplete"]
                .iter()
                .filter_map(|k| lower_attr(k))
                .any(|v| v.contains("email") || v.contains("e-mail")));
    popup.ad_markup = tokens.iter().any(|t| AD_SLOT_TOKENS.contains(&t.as_str()))
        || AD_SLOT_ATTRIBUTES.iter().any(|a| attr(a).is_some());
    if matches!(
        tag,
        "iframe" | "frame" | "video" | "source" | "img" | "embed" | "object"
    ) {
        let src = attr("src").or_else(|| attr("data"));
        if let Some((host, url_tokens)) = src.and_then(url_parts) {
            popup.ad_markup |= url_tokens
                .iter()
                .any(|t| AD_URL_TOKENS.contains(&t.as_str()));
            chrome.video |= matches!(tag, "iframe" | "frame" | "embed")
                && VIDEO_HOSTS.iter().any(|d| host_is(&host, d));
        }
        if matches!(tag, "iframe" | "frame") {
            let frame = frame_evidence(src, attr("title"), base);
            popup.frame = frame.consent || frame.mail;
        }
    }
    if let Some(label) = lower_attr("aria-label") {
        let words = words_of(&label);
        popup.words |= AD_LABELS.iter().any(|w| has_phrase(&words, w));
        if is_control(object) || tag == "input" {
            chrome.commerce |= CART_PHRASES.iter().any(|p| mentions(&label, &words, p));
            chrome.back_to_top |= TOP_PHRASES.iter().any(|p| mentions(&label, &words, p));
        }
    }
    if tag == "input"
        && matches!(input_type.as_str(), "submit" | "button")
        && let Some(value) = lower_attr("value")
    {
        let words = words_of(&value);
        chrome.commerce |= CART_PHRASES.iter().any(|p| mentions(&value, &words, p));
    }

    chrome.video |= tag == "video";
    chrome.landmark = tag == "footer"
        || matches!(attr("role"), Some("search" | "banner" | "contentinfo"))
        || (tag == "input" && input_type == "search");
    chrome.commerce |= has_token(&CART_TOKENS);
    if tag == "form"
        && let Some(action) = attr("action")
    {
        let path = base
            .and_then(|b| b.join(action.trim()).ok())
            .map_or_else(|| action.to_owned(), |u| u.path().to_owned());
        chrome.commerce |= name_tokens(&path)
            .iter()
            .any(|t| CART_TOKENS.contains(&t.as_str()));
    }
    let itemprop = lower_attr("itemprop").unwrap_or_default();
    let itemtype = lower_attr("itemtype").unwrap_or_default();
    chrome.commerce |= itemprop.split_ascii_whitespace().any(|p| {
        matches!(
            p,
            "offers" | "price" | "pricecurrency" | "sku" | "availability" | "lowprice"
        )
    }) || [
        "schema.org/offer",
        "schema.org/product",
        "schema.org/aggregateoffer",
    ]
    .iter()
    .any(|t| itemtype.contains(t))
        || ["data-product-id", "data-variant-id", "data-sku"]
            .iter()
            .any(|a| attr(a).is_some());
    chrome.variant_field = (tag == "select" || tag == "input")
        && (input_type == "number" || has_token(&VARIANT_TOKENS));

    if tag == "a" {
        chrome.links = 1;
        let href = attr("href").unwrap_or_default().trim();
        if is_share_link(href) {
            chrome.share_links = 1;
        }
        if href.len() > 1 && href.starts_with('#') {
            chrome.fragment_links = 1;
        }
        chrome.back_to_top |= matches!(
            href.to_lowercase().as_str(),
            "#top" | "#page-top" | "#pagetop"
        );
    }
    if chrome.share_links == 0
        && (is_control(object) || tag == "a")
        && (attr("data-network").is_some() || attr("data-share").is_some())
    {
        chrome.share_links = 1;
    }
    (chrome, popup)
}

/// Signals of one text node: popup words, a price, and cart or back-to-top labels when the
/// text sits in a control (`in_control`).
fn text_signals(text: &str, in_control: bool) -> (ChromeSignals, PopupSignals) {
    let mut chrome = ChromeSignals::default();
    let mut popup = PopupSignals::default();
    let lower = text.to_lowercase();
    if lower.trim().is_empty() {
        return (chrome, popup);
    }
    let words = words_of(&lower);
    popup.words = CONSENT_WORDS.iter().any(|w| lower.contains(w))
        || NEWSLETTER_WORDS.iter().any(|w| lower.contains(w))
        || SUBSCRIPTION_WORDS.iter().any(|w| lower.contains(w))
        || LOGIN_WORDS.iter().any(|w| has_phrase(&words, w))
        || AD_LABELS.iter().any(|w| has_phrase(&words, w))
        || matches!(lower.trim(), "ad" | "ads" | "anuncio" | "pub");
    chrome.price = has_price(&lower);
    if in_control {
        chrome.commerce = CART_PHRASES.iter().any(|p| mentions(&lower, &words, p));
        chrome.back_to_top = TOP_PHRASES.iter().any(|p| mentions(&lower, &words, p));
    }
    (chrome, popup)
}

/// Per object of `snapshot`: its subtree is page chrome (module docs). Text inside a
/// control counts as the control's label up to four ancestors up.
pub fn page_chrome(snapshot: &LayoutSnapshot) -> Vec<bool> {
    let objects = &snapshot.objects;
    let base = url::Url::parse(&snapshot.url).ok();
    let n = objects.len();
    let mut chrome = vec![ChromeSignals::default(); n];
    let mut popup = vec![PopupSignals::default(); n];
    for i in (0..n).rev() {
        let object = &objects[i];
        let (c, p) = match object.kind {
            NodeKind::Element => element_signals(object, base.as_ref()),
            NodeKind::Text => {
                let mut ancestor = object.parent;
                let mut in_control = false;
                for _ in 0..4 {
                    let Some(a) = ancestor.filter(|a| *a < n) else {
                        break;
                    };
                    if is_control(&objects[a]) {
                        in_control = true;
                        break;
                    }
                    ancestor = objects[a].parent;
                }
                text_signals(&object.text, in_control)
            }
            NodeKind::Document => Default::default(),
        };
        chrome[i].add(&c);
        popup[i].add(&p);
        if let Some(parent) = object.parent.filter(|p| *p < i) {
            let (child_chrome, child_popup) = (chrome[i], popup[i]);
            chrome[parent].add(&child_chrome);
            popup[parent].add(&child_popup);
        }
    }
    (0..n)
        .map(|i| objects[i].kind == NodeKind::Element && chrome[i].is_chrome() && !popup[i].any())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ComputedStyle, EngineKind, Rect};

    fn node(
        kind: NodeKind,
        tag: &str,
        parent: Option<usize>,
        attrs: &[(&str, &str)],
    ) -> LayoutObject {
        LayoutObject {
            engine_node: 0,
            parent,
            kind,
            tag: tag.to_owned(),
            object_type: "",
            rect: Rect::default(),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            text: String::new(),
            style: ComputedStyle::default(),
            paint_order: None,
        }
    }

    /// A box (index 1) holding `children` (tag, attributes, text; the text goes into a text
    /// node below the element).
    /// A child element: tag, attributes, text.
    type Child<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    fn chrome_of(children: &[Child<'_>]) -> bool {
        let mut objects = vec![
            node(NodeKind::Document, "#document", None, &[]),
            node(NodeKind::Element, "div", Some(0), &[("class", "bar")]),
        ];
        for (tag, attrs, text) in children {
            objects.push(node(NodeKind::Element, tag, Some(1), attrs));
            if !text.is_empty() {
                let parent = objects.len() - 1;
                let mut t = node(NodeKind::Text, "#text", Some(parent), &[]);
                t.text = (*text).to_owned();
                objects.push(t);
            }
        }
        let snapshot = LayoutSnapshot {
            url: "https://shop.example.org/p/1".into(),
            engine: EngineKind::Embedded,
            viewport_width: 1000,
            viewport_height: 800,
            scroll_y: 0,
            document_width: 1000,
            document_height: 3000,
            objects,
        };
        page_chrome(&snapshot)[1]
    }

    #[test]
    fn commerce_bars_are_chrome_in_several_languages_and_markups() {
        assert!(chrome_of(&[("button", &[], "Add to cart")]));
        assert!(chrome_of(&[("button", &[], "Dodaj do koszyka")]));
        assert!(chrome_of(&[("button", &[], "カートに入れる")]));
        assert!(chrome_of(&[(
            "input",
            &[("type", "submit"), ("value", "Ajouter au panier")],
            ""
        )]));
        assert!(chrome_of(&[("form", &[("action", "/cart/add")], "")]));
        assert!(chrome_of(&[("span", &[("itemprop", "price")], "19")]));
        assert!(chrome_of(&[
            ("span", &[], "89,95 €"),
            ("select", &[("name", "size")], "")
        ]));
        // A price alone (a paywall's offer) is not commerce; a variant field alone neither.
        assert!(!chrome_of(&[
            ("span", &[], "4,99 € im Monat"),
            ("button", &[], "Weiter")
        ]));
        assert!(!chrome_of(&[("select", &[("name", "size")], "")]));
    }

    #[test]
    fn popup_signals_keep_a_box_a_popup() {
        // An ad with a buy button, a coupon sign-up that names the cart, a cart dialog.
        assert!(!chrome_of(&[
            ("span", &[], "Anzeige"),
            ("button", &[], "Jetzt kaufen")
        ]));
        assert!(!chrome_of(&[
            ("input", &[("type", "email")], ""),
            ("button", &[("class", "cart-coupon")], "Get 10 %")
        ]));
        assert!(!chrome_of(&[
            ("div", &[("role", "dialog")], ""),
            ("button", &[], "Checkout")
        ]));
    }

    #[test]
    fn share_toc_top_video_and_search_are_chrome() {
        assert!(chrome_of(&[
            (
                "a",
                &[("href", "https://www.facebook.com/sharer/sharer.php?u=x")],
                "f"
            ),
            (
                "a",
                &[("href", "https://twitter.com/intent/tweet?url=x")],
                "t"
            ),
        ]));
        assert!(chrome_of(&[
            ("a", &[("href", "#intro")], "Intro"),
            ("a", &[("href", "#method")], "Method"),
            ("a", &[("href", "#results")], "Results"),
        ]));
        assert!(chrome_of(&[("button", &[("aria-label", "Nach oben")], "")]));
        assert!(chrome_of(&[("video", &[("src", "/media/clip.mp4")], "")]));
        assert!(chrome_of(&[(
            "iframe",
            &[("src", "https://www.youtube-nocookie.com/embed/abc")],
            ""
        )]));
        assert!(chrome_of(&[("input", &[("type", "search")], "")]));
        // An ad video, and a plain notice, are not chrome.
        assert!(!chrome_of(&[(
            "video",
            &[("src", "https://cdn.example.net/ads/preroll.mp4")],
            ""
        )]));
        assert!(!chrome_of(&[
            ("p", &[], "We are closed on Monday."),
            ("button", &[], "OK")
        ]));
    }

    #[test]
    fn prices_need_digits_beside_a_currency() {
        assert!(has_price("89,95 €"));
        assert!(has_price("$12"));
        assert!(has_price("ab 49 kr"));
        assert!(has_price("1.980円"));
        assert!(!has_price("save in € and $ today"));
    }
}
