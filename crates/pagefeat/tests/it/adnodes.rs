//! Ad nodes with token features (issue 15 item 2): a vocabulary learned on some sites finds ad
//! slots on sites it never saw, where the layout alone cannot tell them from content; a token
//! only one site uses never becomes a column; a saved token model scores trees through the
//! same feature names.

use pagefeat::ad_eval::held_out;
use pagefeat::ad_tokens::{THIRD_PARTY, Vocabulary, ad_feature_rows};
use pagefeat::evaluation::report;
use pagefeat::model::ForestParams;
use pagefeat::stat_node::{CssAttributes, ExtendAttributes, StatNode, StatTree};
use pagefeat::training::{AdSamples, NamedTree, fit_ad, score_samples};

/// The ad slots of `site`'s page: three boxes whose places move with the site.
fn slots(site: usize) -> [u32; 3] {
    let shift = (site * 7 % 9) as u32;
    [2 + shift, 12 + shift, 21 + shift / 2]
}

/// A page of `site`: a body with 30 same-sized boxes; the [`slots`] are ad slots whose class
/// carries an ad token (`ad-slot`, `sponsor-box`, `gpt-ad`, by site) and that the filter list
/// labels. Every box has the same layout and the slots move, so only the tokens tell them
/// apart. Box 1 carries the site's own class (`uniq<letter>`), labelled only on site 0.
fn page(site: usize) -> NamedTree {
    let ad_classes = ["ad-slot top", "sponsor-box", "gpt-ad unit"];
    let plain_classes = ["story", "teaser card", "nav item", "footer-link"];
    let mut nodes = vec![StatNode {
        id: 0,
        name: "body".to_owned(),
        visible: true,
        width: 1280,
        height: 3000,
        children: (1..=30).collect(),
        ..StatNode::default()
    }];
    for i in 1..=30u32 {
        let ad = slots(site).contains(&i);
        let special = i == 1;
        let class = if ad {
            ad_classes[(site + i as usize) % ad_classes.len()].to_owned()
        } else if special {
            format!("uniq{}", char::from(b'a' + (site % 26) as u8))
        } else {
            plain_classes[(site + i as usize) % plain_classes.len()].to_owned()
        };
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("class".to_owned(), class);
        nodes.push(StatNode {
            id: i,
            parent: Some(0),
            name: "div".to_owned(),
            visible: true,
            xpos: 0,
            ypos: i as i32 * 90,
            width: 300,
            height: 80,
            attributes,
            extend_attributes: Some(ExtendAttributes {
                depth: 1,
                ad_filter_match: ad || (special && site == 0),
                ..ExtendAttributes::default()
            }),
            css_attributes: Some(CssAttributes::default()),
            ..StatNode::default()
        });
    }
    NamedTree {
        key: format!("clean__site{site}"),
        tree: StatTree {
            url: format!("https://site{site}.example/"),
            viewport_width: 1280,
            viewport_height: 800,
            document_width: 1280,
            document_height: 3000,
            nodes,
            ..StatTree::default()
        },
    }
}

fn samples(sites: usize) -> Vec<AdSamples> {
    (0..sites).map(|s| AdSamples::of(&page(s))).collect()
}

fn params() -> ForestParams {
    ForestParams {
        trees: 10,
        ..ForestParams::default()
    }
}

#[test]
fn tokens_find_ad_slots_on_unseen_sites_where_layout_cannot() {
    let pages = samples(12);
    let (layout, _) = held_out(&pages, 4, 0, params(), 3).expect("layout model");
    let (tokens, names) = held_out(&pages, 4, 16, params(), 3).expect("token model");
    let layout = report(&layout, 200, 1);
    let tokens = report(&tokens, 200, 1);
    assert_eq!(tokens.sites, 12);
    assert!(
        tokens.model.f1.value >= 0.9,
        "token model on unseen sites: {:?}",
        tokens.confusion
    );
    assert!(
        layout.model.f1.value < 0.5,
        "layout-only model should not see the slots: {:?}",
        layout.confusion
    );
    let vocab = Vocabulary::from_feature_names(&names).expect("names");
    assert!(vocab.tokens.iter().any(|t| t == "own:ad"), "{vocab:?}");
    assert!(
        !vocab.tokens.iter().any(|t| t.contains("uniq")),
        "a one-site token became a column: {vocab:?}"
    );
}

#[test]
fn a_token_model_scores_trees_through_its_feature_names() {
    let pages = samples(8);
    let refs: Vec<&AdSamples> = pages.iter().collect();
    let model = fit_ad(&refs, params(), 16).expect("fit");
    assert_eq!(
        model.features[pagefeat::features::NODE_FEATURES.len()],
        THIRD_PARTY
    );
    let unseen = page(40);
    let (samples, rows) = ad_feature_rows(&unseen.tree, &model.features).expect("rows");
    assert_eq!(rows[0].len(), model.features.len());
    let direct = model.score(&rows).expect("score");
    let via_samples = score_samples(&model, &AdSamples::of(&unseen)).expect("score");
    assert_eq!(direct, via_samples);
    let flagged: Vec<u32> = samples
        .iter()
        .zip(&direct)
        .filter(|(_, s)| **s >= model.threshold)
        .map(|(i, _)| unseen.tree.nodes[*i].id)
        .collect();
    assert_eq!(flagged, slots(40));
}
