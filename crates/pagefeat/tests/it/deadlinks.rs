//! Dead links (issue 15, items 1 and 3): the word-boundary lexicon, CJK, the site-grouped split,
//! bootstrap interval shapes, the shipped feature cache against the shipped pages, and a model
//! that never saw their sites calling none of the hand-checked "mentions not-found words"
//! pages a dead link.

use std::collections::BTreeSet;

use pagefeat::deadlink_data::{self, HAND_CHECKED_FILE, LabelOrigin, read_hand_checked};
use pagefeat::evaluation::{Outcome, report, site_folds};
use pagefeat::lexicon;

fn dir() -> std::path::PathBuf {
    testkit::data_path("pages/deadlinks")
}

#[test]
fn lexicon_needs_whole_words_and_weighs_normal_sentences_weakly() {
    assert!(!lexicon::find("A film about time loops").any());
    assert_eq!(lexicon::find("Oops, I did it again").weak, 1);
    // "no existe" inside a normal sentence: weak evidence only, never strong
    let hits = lexicon::find("El tribunal dijo que no existe resolución que suspenda la causa");
    assert_eq!((hits.strong, hits.weak), (0, 1));
    let hits = lexicon::find("Página no encontrada");
    assert_eq!((hits.strong, hits.weak), (1, 0));
    // the same words as a normal page's title give a weak row, as an error page's a strong one
    let normal = pagefeat::deadlink::row_of_html(
        "<title>Warum das Gesetz nicht gefunden wurde</title><main><p>Ein Bericht.</p></main>",
    );
    let error = pagefeat::deadlink::row_of_html(
        "<title>Seite nicht gefunden</title><main><h1>Fehler 404</h1></main>",
    );
    assert_eq!((normal[0], normal[1]), (0.0, 1.0));
    assert_eq!((error[0], error[1]), (1.0, 0.0));
}

#[test]
fn cjk_phrases_match_without_spaces() {
    for (text, strong) in [
        ("对不起，找不到页面", 1),
        ("抱歉，页面不存在。", 1),
        ("ページが見つかりません", 1),
        ("페이지를 찾을 수 없습니다", 1),
        ("페이지를찾을수없습니다", 1),
        ("今天的新闻：市政府公布预算", 0),
    ] {
        assert_eq!(lexicon::find(text).strong, strong, "{text}");
    }
    // a weak CJK word in a normal sentence
    let hits = lexicon::find("我们在旅馆里找不到房间，只好睡在车上");
    assert_eq!((hits.strong, hits.weak), (0, 1));
}

#[test]
fn site_split_never_puts_a_site_on_both_sides() {
    let samples = deadlink_data::read_features(&dir().join(deadlink_data::FEATURES_FILE)).unwrap();
    let sites: Vec<String> = samples.iter().map(|s| s.site.clone()).collect();
    let folds = site_folds(&sites, 5, 7);
    for fold in 0..5 {
        let inside: BTreeSet<&str> = sites
            .iter()
            .zip(&folds)
            .filter(|(_, f)| **f == fold)
            .map(|(s, _)| s.as_str())
            .collect();
        let outside: BTreeSet<&str> = sites
            .iter()
            .zip(&folds)
            .filter(|(_, f)| **f != fold)
            .map(|(s, _)| s.as_str())
            .collect();
        assert!(inside.is_disjoint(&outside), "fold {fold}");
        assert!(!inside.is_empty());
    }
    // every synthetic variant sits on its base page's site
    for s in samples
        .iter()
        .filter(|s| s.origin == LabelOrigin::Synthetic)
    {
        let base = s.file.rsplit('/').next().unwrap();
        let original = samples
            .iter()
            .find(|o| o.origin != LabelOrigin::Synthetic && o.file.ends_with(&format!("/{base}")))
            .unwrap_or_else(|| panic!("no base page for {}", s.file));
        assert_eq!(s.site, original.site, "{}", s.file);
    }
}

#[test]
fn bootstrap_resamples_sites_so_errors_on_few_sites_widen_the_interval() {
    // 400 positive rows on 40 sites (10 each), 40 of them missed: one per site (spread) or
    // all rows of 4 sites (concentrated). Same recall, 0.9; only the concentrated case varies
    // when whole sites are resampled.
    let outcomes = |concentrated: bool| -> Vec<Outcome> {
        (0..400)
            .map(|i| Outcome {
                site: format!("s{}", i / 10),
                predicted: if concentrated { i >= 40 } else { i % 10 != 0 },
                actual: true,
            })
            .collect()
    };
    let spread = report(&outcomes(false), 500, 1);
    let concentrated = report(&outcomes(true), 500, 1);
    for r in [&spread, &concentrated] {
        assert_eq!((r.rows, r.sites, r.positives), (400, 40, 400));
        assert!((r.model.recall.value - 0.9).abs() < 1e-12);
        for f in [r.model.precision, r.model.recall, r.model.f1] {
            assert!(f.low <= f.value && f.value <= f.high, "{f:?}");
        }
        assert_eq!(r.always_negative.f1.value, 0.0);
        assert_eq!(r.always_positive.recall.value, 1.0);
        assert_eq!(r.always_positive.precision.value, 1.0);
    }
    assert_eq!(
        (spread.model.recall.low, spread.model.recall.high),
        (0.9, 0.9)
    );
    assert!(concentrated.model.recall.low < 0.85 && concentrated.model.recall.high > 0.95);
}

#[test]
fn hand_checked_set_is_large_enough_and_states_origins() {
    let hand = read_hand_checked(&dir().join(HAND_CHECKED_FILE)).unwrap();
    assert!(hand.len() >= 150, "{}", hand.len());
    assert!(hand.iter().any(|h| h.dead_link));
    assert!(hand.iter().filter(|h| h.mentions_not_found()).count() >= 30);
    assert!(hand.iter().all(|h| h.site != "?" && !h.note.is_empty()));
}

#[test]
fn model_never_calls_mentions_pages_dead_links_and_cache_matches_pages() {
    let run =
        pagefeat::deadlink_report::run(&dir(), &testkit::data_path("pages"), 1 << 24, 7).unwrap();
    assert!(run.stale.is_empty(), "stale cache rows: {:?}", run.stale);
    assert!(run.checked_rows >= 70, "{}", run.checked_rows);
    assert!(run.regression.pages >= 30, "{:?}", run.regression);
    assert!(run.regression.rows_left_out >= run.regression.pages);
    assert_eq!(
        run.regression.false_positives,
        Vec::<(String, f64)>::new(),
        "{:?}",
        run.regression
    );
    // the error templates stay dead links for the final model
    let page = deadlink_data::read_page_file(
        &testkit::data_path("pages/errors/HttpErrorPages__HTTP404.html"),
        1 << 24,
    )
    .unwrap();
    let score = run
        .model
        .score(&[pagefeat::deadlink::row_of_html(&page.html)])
        .unwrap()[0];
    assert!(score >= run.model.threshold, "{score}");
}
