//! The fixed set of interaction types a link may carry in `type` (docs/link-contract.md).
//!
//! This is the one place the set is defined: the parser, the metrics labels and the schema's
//! CHECK constraint are all derived from or tested against `InteractionType::ALL`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InteractionType {
    ImageClick,
    ButtonUrl,
    CarouselClick,
    ImagemapClick,
    RichmenuClick,
    FlexClick,
    TextLink,
}

impl InteractionType {
    /// Every accepted value, in the order the schema lists them.
    pub const ALL: [InteractionType; 7] = [
        InteractionType::ImageClick,
        InteractionType::ButtonUrl,
        InteractionType::CarouselClick,
        InteractionType::ImagemapClick,
        InteractionType::RichmenuClick,
        InteractionType::FlexClick,
        InteractionType::TextLink,
    ];

    /// What a link without `type` (or with an empty one) means, as in the old endpoint.
    pub const DEFAULT: InteractionType = InteractionType::ImageClick;

    pub fn as_str(self) -> &'static str {
        match self {
            InteractionType::ImageClick => "image_click",
            InteractionType::ButtonUrl => "button_url",
            InteractionType::CarouselClick => "carousel_click",
            InteractionType::ImagemapClick => "imagemap_click",
            InteractionType::RichmenuClick => "richmenu_click",
            InteractionType::FlexClick => "flex_click",
            InteractionType::TextLink => "text_link",
        }
    }

    pub fn parse(value: &str) -> Option<InteractionType> {
        InteractionType::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
    }
}

impl fmt::Display for InteractionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        for t in InteractionType::ALL {
            assert_eq!(InteractionType::parse(t.as_str()), Some(t));
        }
        assert_eq!(InteractionType::parse("IMAGE_CLICK"), None);
        assert_eq!(InteractionType::parse(""), None);
    }
}
