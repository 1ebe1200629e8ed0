"""A synthetic corpus in the ReDSM5 schema: small enough for a CPU, learnable, not trivial.

Trivial data would make every sweep look good, so the generator mixes in what makes the real task
hard: several phrasings per symptom with varying slot words, hard negatives that share the
evidence vocabulary ("I sleep fine these days"), distractor sentences, posts from three to sixty
sentences (longer than one 256-token window), several symptoms per post, posts without
annotations, ~3% flipped labels, and annotation copies that differ from the post the way cleaned
or paraphrased copies of the real data do (so every alignment rule is exercised).

Every sentence ends with ``.``, ``!`` or ``?`` and has no other sentence-ending punctuation
followed by a space, so the k-th sentence of the generated list is the k-th one the sentence
splitter finds and ``sentence_id`` = ``<post_id>_<k>`` is right for verbatim rows.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from data_prep.redsm5 import ANNOTATIONS_CSV, POSTS_CSV
from data_prep.symptoms import SYMPTOMS
from plumbing.atomic import atomic_dir, is_complete
from plumbing.errors import ConfigError

SLOTS: dict[str, tuple[str, ...]] = {
    "time": ("2am", "3am", "4am", "5am", "midnight", "4 in the morning"),
    "duration": ("two weeks", "a month", "three months", "half a year", "a few weeks", "almost a year"),
    "person": ("my mom", "my dad", "my sister", "my partner", "my roommate", "my best friend",
               "my boss", "my girlfriend", "my boyfriend", "my brother"),
    "activity": ("gaming", "painting", "playing guitar", "running", "reading", "drawing", "cooking",
                 "hiking", "playing football", "writing", "watching movies", "going to the gym"),
    "food": ("breakfast", "pizza", "dinner", "lunch", "snacks", "junk food", "cereal"),
    "amount": ("ten pounds", "five kilos", "twenty pounds", "a lot of weight", "three kilos"),
    "hours": ("ten", "twelve", "fourteen", "eleven", "nine"),
    "task": ("showering", "doing the dishes", "brushing my teeth", "answering texts",
             "getting out of bed", "doing laundry", "making food"),
    "place": ("at work", "in class", "at home", "in lectures", "at my desk", "on the bus"),
    "game": ("Elden Ring", "Minecraft", "Stardew Valley", "Zelda", "Hades", "Celeste"),
    "pet": ("cat", "dog", "rabbit", "parrot", "hamster"),
    "age": ("19", "22", "24", "27", "31", "35", "42"),
    "days": ("three", "four", "five", "six", "ten"),
}

POSITIVE: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": (
        "I've felt empty for {duration} and nothing seems to lift it.",
        "Every day I wake up sad and it stays with me all day.",
        "I cry almost every night and I don't even know why.",
        "Everything feels hopeless and grey lately.",
        "I just feel so down all the time, even {place}.",
        "{Person} keeps asking why I look so miserable all the time.",
    ),
    "ANHEDONIA": (
        "I used to love {activity} but now it feels pointless.",
        "Nothing I do is fun anymore, not even {activity}.",
        "I haven't enjoyed {activity} in {duration}.",
        "{Person} invited me out and I just couldn't care less.",
        "I stopped {activity} because I don't get any joy from it.",
        "Even things I loved like {activity} feel like chores now.",
    ),
    "APPETITE_CHANGE": (
        "I've lost {amount} without trying because I barely eat.",
        "I skip {food} most days because I'm never hungry.",
        "I keep eating {food} late at night even when I'm not hungry.",
        "My appetite is completely gone and food tastes like nothing.",
        "I've gained {amount} in {duration} from stress eating.",
        "Some days I forget to eat at all.",
    ),
    "SLEEP_ISSUES": (
        "I can't fall asleep until {time} most nights.",
        "I keep waking up at {time} and can't get back to sleep.",
        "I sleep {hours} hours a day and still want to stay in bed.",
        "Most nights I just lie awake staring at the ceiling.",
        "My sleep is a mess, I'm up until {time} every night.",
        "I haven't slept properly in {duration}.",
    ),
    "PSYCHOMOTOR": (
        "I can't sit still, I pace around my room for hours.",
        "My body feels slowed down, like I'm moving through mud.",
        "{Person} said I talk so slowly now that it's hard to follow me.",
        "I keep fidgeting and tapping my leg {place} and can't stop.",
        "Even walking to the kitchen feels like slow motion.",
        "I feel restless and agitated all the time - I keep pacing.",
    ),
    "FATIGUE": (
        "I'm exhausted all the time - even after {hours} hours of sleep.",
        "{Task} takes all the energy I have.",
        "I have zero energy and {task} feels like climbing a mountain.",
        "I'm so tired that I nap every afternoon and still feel drained.",
        "By noon I'm completely worn out, even on days I do nothing.",
        "I've felt drained for {duration} no matter how much I rest.",
    ),
    "WORTHLESSNESS": (
        "I feel completely worthless and like a burden to {person}.",
        "Everything that goes wrong is my fault, I ruin everything.",
        "I'm a failure and I don't deserve anyone's kindness.",
        "I hate myself for letting {person} down again.",
        "I feel so guilty about everything, even things I didn't do.",
        "I'm useless {place} and everyone can see it.",
    ),
    "COGNITIVE_ISSUES": (
        "I can't concentrate {place}, I read the same line ten times.",
        "My memory is shot, I forget what {person} told me minutes ago.",
        "I can't make even simple decisions like what to eat.",
        "My brain feels foggy and I lose track of conversations.",
        "I keep zoning out and missing deadlines because I can't focus.",
        "Thinking feels slow, like my head is full of cotton.",
    ),
    "SUICIDAL_THOUGHTS": (
        "Sometimes I think everyone would be better off if I were dead.",
        "I've been thinking about ending it all.",
        "I wish I could just go to sleep and not wake up.",
        "Thoughts of killing myself keep coming back, especially at {time}.",
        "I've started looking up ways to die.",
        "I don't want to be alive anymore.",
    ),
    "SPECIAL_CASE": (
        "I was diagnosed with depression {duration} ago.",
        "My doctor put me on sertraline and I'm not sure it's working.",
        "I feel weird but I don't know if it's depression or just stress.",
        "My psychiatrist doubled my meds last week.",
        "I've been off my antidepressants for {duration} and something feels off.",
        "I think it all started after the accident but I'm not sure.",
    ),
}

HARD_NEGATIVE: dict[str, tuple[str, ...]] = {
    "DEPRESSED_MOOD": (
        "I was sad when {person} moved away but I got over it quickly.",
        "Honestly my mood has been pretty good for {duration}.",
        "I don't feel empty anymore since I started therapy.",
        "I felt down for a day after the exam but it passed.",
        "I don't cry every night anymore and the emptiness is gone.",
        "{Person} said I look less miserable these days, and I agree.",
        "Things felt hopeless last year but they're a lot brighter now.",
    ),
    "ANHEDONIA": (
        "I still really enjoy {activity} on weekends.",
        "I picked up {activity} again and it's been fun.",
        "{Person} and I had a great time {activity} yesterday.",
        "I lost interest in {activity} but found a new hobby I love.",
        "I used to think nothing was fun, but {activity} proved me wrong.",
        "I haven't lost my joy in {activity}, it's still the best part of my week.",
        "{Person} invited me out and I was genuinely excited to go.",
    ),
    "APPETITE_CHANGE": (
        "My appetite is back to normal now.",
        "I had {food} with {person} and it was lovely.",
        "I'm eating less on purpose to lose {amount} before a race.",
        "I eat {food} every day like I always have.",
        "I'm hungry all the time because I'm training for a marathon.",
        "I skip {food} sometimes but only when I'm running late.",
        "I've gained {amount} since I started lifting, which was the plan.",
    ),
    "SLEEP_ISSUES": (
        "I sleep fine these days.",
        "I stayed up until {time} once for a game launch, which was fun.",
        "My sleep got better after I stopped drinking coffee.",
        "{Person} can't sleep because of the neighbours, but I sleep through it.",
        "I used to lie awake staring at the ceiling, but not anymore.",
        "I haven't had trouble falling asleep in {duration}.",
        "I woke up at {time} because of a storm, then fell asleep again right away.",
    ),
    "PSYCHOMOTOR": (
        "I went for a walk with {person} and it felt good to move.",
        "I'm a fast talker and always have been.",
        "I paced around before my job interview but that's normal nerves.",
        "The traffic was slow this morning so I was late.",
        "I can sit still again without pacing around my room.",
        "My legs felt slow after the marathon, which is expected.",
        "{Person} fidgets a lot {place} and it drives me a bit crazy.",
    ),
    "FATIGUE": (
        "I was tired after the hike but in a good way.",
        "My energy is a lot better since I started {activity}.",
        "I felt tired after a long shift, but a good night's sleep fixed it.",
        "{Person} is exhausted from the new baby, so I'm helping out.",
        "I'm not exhausted all the time like I used to be.",
        "I have way more energy since I fixed my sleep schedule.",
        "{Task} used to take all my energy, now it's easy.",
    ),
    "WORTHLESSNESS": (
        "I used to feel worthless but therapy helped.",
        "I felt guilty for forgetting {person}'s birthday, so I called to apologise.",
        "I'm proud of myself for finishing the project.",
        "It wasn't my fault and I know that now.",
        "I don't feel like a burden to {person} anymore.",
        "I used to hate myself, but I'm learning to be kinder to me.",
        "{Person} said it wasn't my fault, and for once I believed it.",
    ),
    "COGNITIVE_ISSUES": (
        "I focused really well {place} today.",
        "I forgot my keys this morning, classic me.",
        "I made a big decision and moved to a new city.",
        "{Person} says I have a great memory for birthdays.",
        "My brain fog cleared up after I started eating better.",
        "I can concentrate {place} again, which feels great.",
        "I had to make a tough decision at work and I think I made the right one.",
    ),
    "SUICIDAL_THOUGHTS": (
        "I used to have suicidal thoughts but I haven't had them in {duration}.",
        "I'm glad I'm still here and I want to live.",
        "My character died in {game} so I had to restart.",
        "Our old {pet} died last year and it hit the family hard.",
        "I'm not thinking about ending it all, I just need to vent.",
        "I wish I could sleep in on Mondays.",
        "The villain dies at the end of the book, which I didn't expect.",
    ),
    "SPECIAL_CASE": (
        "{Person} takes medication for allergies.",
        "I read an article about depression for a class.",
        "The doctor said my blood test was fine.",
        "I don't think I'm depressed, just busy with exams.",
        "{Person} was diagnosed with diabetes {duration} ago.",
        "My doctor put me on antibiotics for an ear infection.",
        "I stopped my allergy meds because spring is over.",
    ),
}

# One sentence can carry several symptoms; these are evidence for both.
COMBINED: tuple[tuple[str, str, str], ...] = (
    ("I'm too tired to even enjoy {activity} anymore.", "FATIGUE", "ANHEDONIA"),
    ("Lying awake at {time} I just think about how worthless I am.", "SLEEP_ISSUES", "WORTHLESSNESS"),
    ("I'm so sad that I've stopped eating properly.", "DEPRESSED_MOOD", "APPETITE_CHANGE"),
    ("I can't focus on anything and I'm exhausted by noon.", "COGNITIVE_ISSUES", "FATIGUE"),
)

FILLER: tuple[str, ...] = (
    "Work has been really busy this week.",
    "It's been raining here for {days} days straight.",
    "I finally beat the last boss in {game}.",
    "My {pet} knocked a glass off the table this morning.",
    "Does anyone else here have advice on this?",
    "Sorry for the long post, I'm on mobile.",
    "My dog loves walks in the park.",
    "We're moving apartments next month.",
    "Has anyone tried journaling, and did it help?",
    "The weather finally got warmer this weekend.",
    "I watched a documentary about space yesterday.",
    "{Person} got a new puppy and sent me pictures.",
    "My laptop broke so I'm typing this on my phone.",
    "I'm a {age} year old student.",
    "Thanks for reading if you got this far!",
    "Any tips would be appreciated.",
    "Our team lost the match on Saturday.",
    "I had a dentist appointment on Tuesday.",
    "I'm not sure if this is the right subreddit for this.",
    "Traffic on my commute has been awful lately.",
    "I've been playing {game} with friends online.",
    "My {pet} keeps waking me up for food.",
    "The new season of that show came out and it's good.",
    "I live with {person} in a small flat.",
    "What do you all do to get through the week?",
    "I work part time at a bakery {days} days a week.",
    "{Person} and I went to a concert last month.",
    "My phone screen cracked again!",
    "I'm {age} and still figuring things out.",
    "The bus was late again today.",
    "I've been trying to learn Spanish on an app.",
    "Is it normal to feel like this?",
    "My exams start in {days} weeks.",
    "{Person} wants to repaint the living room.",
    "I usually spend Sundays {activity}.",
)

OPENERS = ("Honestly, ", "Lately ", "To be honest, ", "Ugh, ", "And yeah, ", "Idk, ", "So ")
TAGS = (" tbh", " lol", " I guess", " honestly", " for real")

POST_COLUMNS = ("post_id", "text")
ANNOTATION_COLUMNS = ("post_id", "sentence_id", "sentence_text", "DSM5_symptom", "status", "explanation")
_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, rng: random.Random) -> str:
    """Fill slots (a capitalised slot name like ``{Person}`` starts the sentence), and sometimes add
    a label-neutral opener or tag, so that no surface form is worth memorising."""
    def value(m: re.Match) -> str:
        name = m.group(1)
        word = rng.choice(SLOTS[name.lower()])
        return word[0].upper() + word[1:] if name[0].isupper() else word
    text = _SLOT.sub(value, template)
    if rng.random() < 0.2:
        head = text if re.match(r"I\b", text) else text[0].lower() + text[1:]
        text = rng.choice(OPENERS) + head
    if rng.random() < 0.1:
        text = text[:-1] + rng.choice(TAGS) + text[-1]
    return text


def _annotated(rng: random.Random, symptoms: list[str]) -> list[tuple[str, list[tuple[str, int]]]]:
    """(sentence, [(symptom, status)]) for the annotated sentences of one post."""
    items = []
    for symptom in symptoms:
        if rng.random() < 0.7:  # positive evidence, sometimes twice
            for template in rng.sample(POSITIVE[symptom], 2 if rng.random() < 0.15 else 1):
                items.append((_fill(template, rng), [(symptom, 1)]))
            if rng.random() < 0.4:
                items.append((_fill(rng.choice(HARD_NEGATIVE[symptom]), rng), [(symptom, 0)]))
        else:  # annotated, but only as not-evidence: a no-answer question for span tasks
            items.append((_fill(rng.choice(HARD_NEGATIVE[symptom]), rng), [(symptom, 0)]))
    if rng.random() < 0.08:
        template, a, b = rng.choice(COMBINED)
        items.append((_fill(template, rng), [(a, 1), (b, 1)]))
    return items


def _unique(draw: Callable[[], str], taken: set[str], tries: int = 20) -> str | None:
    """A sentence not yet in the post (so exact alignment never hits the wrong copy), or None."""
    for _ in range(tries):
        sentence = draw()
        if sentence not in taken:
            taken.add(sentence)
            return sentence
    return None


def _shuffled_cycle(pool: tuple[str, ...], rng: random.Random) -> Iterator[str]:
    """Every template once in random order before any repeats, so filler does not echo itself."""
    while True:
        yield from rng.sample(pool, len(pool))


def _post(rng: random.Random) -> list[tuple[str, list[tuple[str, int]]]]:
    """The sentences of one post in order, each with its (symptom, status) annotations."""
    long = rng.random() < 0.10
    length = rng.randint(30, 60) if long else rng.randint(3, 12)
    items: list[tuple[str, list[tuple[str, int]]]] = []
    if rng.random() >= 0.04:  # a few posts carry no annotation at all
        n_symptoms = rng.choice((2, 3, 4, 5)) if long else rng.choice((1, 1, 2, 2, 3))
        items = _annotated(rng, rng.sample(SYMPTOMS, n_symptoms))
    taken = {s for s, _ in items}  # templates differ, so annotated sentences are already distinct
    if rng.random() < 0.3:  # an unannotated hard negative as a distractor
        symptom = rng.choice(SYMPTOMS)
        distractor = _unique(lambda: _fill(rng.choice(HARD_NEGATIVE[symptom]), rng), taken)
        items += [(distractor, [])] if distractor else []
    fillers = _shuffled_cycle(FILLER, rng)
    while len(items) < length:
        filler = _unique(lambda: _fill(next(fillers), rng), taken)
        if filler is None:  # the filler pool is exhausted: a slightly shorter post
            break
        items.append((filler, []))
    rng.shuffle(items)
    return items


def _variant(text: str, rng: random.Random) -> str:
    """A copy that only normalisation (case, quotes, whitespace, dashes) maps back to ``text``."""
    options = [text.lower(), text.replace(" ", "  ", 1)]
    if "'" in text:
        options.append(text.replace("'", "\u2019"))
    if " - " in text:
        options.append(text.replace(" - ", rng.choice((" \u2013 ", " \u2014 "))))
    return rng.choice([o for o in options if o != text])


_KEEP = {"don't", "not", "no", "never", "fine", "can't", "couldn't", "haven't", "didn't", "wasn't", "anymore"}


def _reworded(text: str, rng: random.Random) -> str:
    """A light paraphrase: one inner word dropped or changed, never one that carries the meaning."""
    words = text.split(" ")
    inner = [i for i in range(1, len(words) - 1) if words[i].lower().strip(",") not in _KEEP]
    i = rng.choice(inner) if inner else 0
    if rng.random() < 0.5 and len(words) > 3:
        del words[i]
    else:
        words[i] = "really" if words[i] != "really" else "truly"
    return " ".join(words)


def _rows(post_id: str, items, rng: random.Random) -> list[tuple[str, ...]]:
    """Annotation rows of one post: mostly verbatim copies, some normalised or reworded, ~3% flipped."""
    rows = []
    for k, (sentence, labels) in enumerate(items):
        for symptom, status in labels:
            r, k_id, text = rng.random(), k, sentence
            if r < 0.05:
                text = _variant(sentence, rng)
            elif r < 0.08:
                text = _reworded(sentence, rng)
                if rng.random() < 0.5 and len(items) > 1:  # an off-by-one id: only fuzzy search finds it
                    k_id = k + 1 if k + 1 < len(items) else k - 1
            if rng.random() < 0.03:
                status = 1 - status
            note = "synthetic: evidence template" if status else "synthetic: shares words, not evidence"
            rows.append((post_id, f"{post_id}_{k_id}", text, symptom, str(status), note))
    return rows


def _join(sentences: list[str], rng: random.Random) -> str:
    """Sentences joined by one space, occasionally by a newline (the splitter breaks at both)."""
    newlines = rng.random() < 0.2
    parts = [sentences[0]]
    for s in sentences[1:]:
        parts.append(("\n" if newlines and rng.random() < 0.2 else " ") + s)
    return "".join(parts)


def _write_csv(path: Path, header: tuple[str, ...], rows) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_demo(directory: str | Path, n_posts: int = 400, seed: int = 13) -> Path:
    """Write redsm5_posts.csv and redsm5_annotations.csv; the same seed gives the same bytes."""
    if n_posts < 1:
        raise ConfigError("data.demo_posts", f"must be at least 1; got {n_posts}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    posts, annotations = [], []
    for i in range(1, n_posts + 1):
        post_id = f"demo_{i:04d}"
        items = _post(rng)
        posts.append((post_id, _join([s for s, _ in items], rng)))
        annotations += _rows(post_id, items, rng)
    _write_csv(out / POSTS_CSV, POST_COLUMNS, posts)
    _write_csv(out / ANNOTATIONS_CSV, ANNOTATION_COLUMNS, annotations)
    return out


def demo_dir(cache_dir: str | Path, n_posts: int, seed: int) -> Path:
    """``<cache_dir>/demo/n<n_posts>-s<seed>``, written once: a temp dir renamed into place when
    complete, so a crashed or concurrent writer never leaves a half-written corpus in use."""
    final = Path(cache_dir) / "demo" / f"n{n_posts}-s{seed}"
    if is_complete(final):
        return final
    with atomic_dir(final) as tmp:
        write_demo(tmp, n_posts, seed)
    return final
