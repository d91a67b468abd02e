"""Writes the project's own sample data (``reviews_mtl/data/sample``): no external data, no licence issue.

Reviews are composed from a phrase bank: each product has a category, each review a star rating that
sets the polarity of its sentences, and each sentence talks about zero or one aspect. Aspect sentences
carry their aspects as labels (``aspects.jsonl``), like the human-annotated sets. Run
``python -m reviews_mtl.data.samplegen`` to rewrite the files; the output is deterministic.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from reviews_mtl.data.sources import SAMPLE_DIR

CATEGORIES: dict[str, list[str]] = {
    "headphones": ["headphones", "earbuds", "headset"],
    "kitchen": ["blender", "coffee maker", "kettle", "toaster"],
    "laptop": ["laptop", "notebook", "chromebook"],
    "phone_case": ["case", "phone case", "cover"],
    "camera": ["camera", "webcam", "action cam"],
    "shoes": ["shoes", "sneakers", "boots"],
    "book": ["book", "novel", "cookbook"],
    "speaker": ["speaker", "soundbar", "smart speaker"],
}

# aspect -> polarity -> phrases; {p} is the product noun.
PHRASES: dict[str, dict[str, list[str]]] = {
    "quality": {
        "pos": [
            "The build quality of this {p} is excellent.",
            "Very well made, feels solid and premium.",
            "Sound and picture quality are top notch.",
            "The materials feel sturdy and high quality.",
        ],
        "neg": [
            "The {p} feels cheap and flimsy.",
            "Poor quality, the plastic creaks everywhere.",
            "Quality is terrible for a brand like this.",
            "Badly made, the seams were already coming apart.",
        ],
    },
    "price": {
        "pos": [
            "The price was very reasonable.",
            "Cheap compared to other brands.",
            "I got it on sale for a great price.",
        ],
        "neg": [
            "Way too expensive for what it is.",
            "The price is much higher than it should be.",
            "Overpriced, I have seen it for half the cost elsewhere.",
        ],
    },
    "shipping": {
        "pos": [
            "Shipping was fast and it arrived two days early.",
            "Delivery was quick, it came the next day.",
            "It arrived on time and tracking was accurate.",
        ],
        "neg": [
            "Shipping took almost three weeks.",
            "The delivery was late and the courier lost it once.",
            "It arrived a week after the promised date.",
        ],
    },
    "packaging": {
        "pos": [
            "It came nicely packaged in a sturdy box.",
            "The packaging was neat and protective.",
            "Everything was well wrapped and secure in the box.",
        ],
        "neg": [
            "The box was crushed and the packaging torn.",
            "Packaging was damaged and parts were loose in the box.",
            "It arrived in a flimsy envelope with no padding.",
        ],
    },
    "durability": {
        "pos": [
            "Still going strong after a year of daily use.",
            "It has held up well and lasts a long time.",
            "Very durable, survived several drops.",
        ],
        "neg": [
            "It broke after two weeks.",
            "Stopped working after a month of light use.",
            "The hinge snapped within a few days.",
            "It fell apart after a couple of uses.",
        ],
    },
    "appearance": {
        "pos": [
            "It looks beautiful and the color is exactly as pictured.",
            "Sleek design, looks great on my desk.",
            "The finish is gorgeous and stylish.",
        ],
        "neg": [
            "It looks ugly in person and the color is off.",
            "The design is bulky and unattractive.",
            "The finish looks dull and scratched easily.",
        ],
    },
    "functionality": {
        "pos": [
            "It works perfectly and does exactly what it should.",
            "Performance is fast and reliable.",
            "Battery life is great and it charges quickly.",
            "All the features work as advertised.",
        ],
        "neg": [
            "It does not work half the time.",
            "Performance is slow and it keeps freezing.",
            "The battery barely lasts an hour.",
            "The main feature simply does not function.",
        ],
    },
    "ease_of_use": {
        "pos": [
            "Setup was easy and took five minutes.",
            "Very easy to use, even for my parents.",
            "The controls are simple and intuitive.",
        ],
        "neg": [
            "The setup is confusing and the manual is useless.",
            "Hard to use, the buttons make no sense.",
            "Difficult to set up, it took me hours.",
        ],
    },
    "customer_service": {
        "pos": [
            "Customer service was helpful and replaced it quickly.",
            "The seller responded fast and was very kind.",
            "Support answered my questions within an hour.",
        ],
        "neg": [
            "Customer service never answered my emails.",
            "The seller refused a refund and was rude.",
            "Support kept me on hold for an hour and did nothing.",
        ],
    },
    "value_for_money": {
        "pos": ["Great value for the money.", "Worth every penny.", "You get a lot for what you pay."],
        "neg": ["Not worth the money at all.", "A waste of money.", "Poor value for what you pay."],
    },
}

GENERAL: dict[str, list[str]] = {
    "pos": [
        "I love this {p}.",
        "Highly recommend it.",
        "Would buy again.",
        "My whole family enjoys it.",
        "Five stars from me.",
        "Exceeded my expectations.",
    ],
    "neu": [
        "It is okay, nothing special.",
        "Does the job, but I expected a bit more.",
        "Average {p}, it is fine.",
        "Not bad, not great.",
        "Some things are good and some are not.",
    ],
    "neg": [
        "I regret buying this {p}.",
        "Do not buy this.",
        "Very disappointed.",
        "Returning it tomorrow.",
        "One of the worst purchases I have made.",
    ],
}

TITLES: dict[int, list[str]] = {
    1: ["Terrible", "Do not buy", "Waste of money", "Awful"],
    2: ["Disappointed", "Not great", "Expected better"],
    3: ["It's okay", "Average", "Mixed feelings"],
    4: ["Pretty good", "Nice {p}", "Happy with it"],
    5: ["Excellent!", "Love it", "Perfect {p}", "Best purchase this year"],
}

STAR_WEIGHTS = (0.16, 0.12, 0.14, 0.22, 0.36)


def _sentence_polarity(stars: int, rng: random.Random) -> str:
    if stars <= 2:
        return "neg" if rng.random() < 0.85 else "pos"
    if stars >= 4:
        return "pos" if rng.random() < 0.85 else "neg"
    return rng.choice(("pos", "neg"))


def generate(
    seed: int = 7, n_products: int = 40, n_reviews: int = 400, n_aspect_sentences: int = 300
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rng = random.Random(seed)
    products = []
    for i in range(n_products):
        category = rng.choice(sorted(CATEGORIES))
        products.append((f"sample-{category}-{i:03d}", category))
    aspects = sorted(PHRASES)
    reviews: list[dict[str, object]] = []
    for i in range(n_reviews):
        product_id, category = rng.choice(products)
        noun = rng.choice(CATEGORIES[category])
        stars = rng.choices(range(1, 6), weights=STAR_WEIGHTS)[0]
        overall = "neg" if stars <= 2 else "neu" if stars == 3 else "pos"
        sentences = [rng.choice(GENERAL[overall])]
        for aspect in rng.sample(aspects, rng.randint(0, 3)):
            sentences.append(rng.choice(PHRASES[aspect][_sentence_polarity(stars, rng)]))
        rng.shuffle(sentences)
        if rng.random() < 0.3:
            sentences.append(rng.choice(GENERAL[overall]))
        text = " ".join(s.format(p=noun) for s in dict.fromkeys(sentences))
        title = rng.choice(TITLES[stars]).format(p=noun) if rng.random() < 0.6 else None
        reviews.append(
            {
                "review_id": f"sample-{i:04d}",
                "product_id": product_id,
                "title": title,
                "text": text,
                "rating": stars,
                "source": "sample",
            }
        )
    sentences_out: list[dict[str, object]] = []
    seen: set[str] = set()
    while len(sentences_out) < n_aspect_sentences:
        noun = rng.choice(rng.choice(list(CATEGORIES.values())))
        roll = rng.random()
        if roll < 0.15:
            text, labels = rng.choice(GENERAL[rng.choice(("pos", "neu", "neg"))]).format(p=noun), []
        else:
            chosen = rng.sample(aspects, 1 if roll < 0.8 else 2)
            parts = [rng.choice(PHRASES[a][rng.choice(("pos", "neg"))]).format(p=noun) for a in chosen]
            text = parts[0] if len(parts) == 1 else f"{parts[0].rstrip('.')}, and {parts[1][0].lower()}{parts[1][1:]}"
            labels = sorted(chosen)
        if text in seen:
            continue
        seen.add(text)
        sentences_out.append({"sentence_id": f"sample-s{len(sentences_out):04d}", "text": text, "aspects": labels})
    return reviews, sentences_out


def write(directory: Path = SAMPLE_DIR) -> None:
    reviews, sentences = generate()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "reviews.jsonl").open("w", encoding="utf-8") as fh:
        for row in reviews:
            fh.write(json.dumps(row) + "\n")
    with (directory / "aspects.jsonl").open("w", encoding="utf-8") as fh:
        for row in sentences:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    write()
