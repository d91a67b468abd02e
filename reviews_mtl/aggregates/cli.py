"""``reviews-mtl aggregates``: read the per-product aggregates in Redis (``show``, ``top``, ``products``, ``trend``,
``quality``), serve them over HTTP with a small live page (``serve``), repair them (``rebuild``, ``reset-topic``),
switch readers to another key prefix (``promote``), list the prefixes (``prefixes``) and drop an old one (``drop``).

Redis comes from ``--redis-url`` or ``REDIS_URL`` (password also ``REDIS_PASSWORD``). Readers read the prefix
named by the pointer key ``REDIS_ACTIVE_PREFIX_KEY``, else ``REDIS_KEY_PREFIX``. Exit codes: 0 found; 1 unknown
product or prefix, or Redis unreachable; 2 a bad option, or a refused promote/drop.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from reviews_mtl.aggregates.analytics_cli import register_analytics
from reviews_mtl.aggregates.repair_cli import register_repair
from reviews_mtl.cli_args import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_redis_args, port_number
from reviews_mtl.settings import ApiSettings
from reviews_mtl.terminal import escape_for_terminal

if TYPE_CHECKING:
    from reviews_mtl.aggregates.prefixes import Prefixes, PrefixInfo
    from reviews_mtl.aggregates.store import AggregateStore, ProductAggregate

EXIT_NOT_FOUND = EXIT_UNAVAILABLE = EXIT_FAILED

# Rankings the help text names; the full list (aspect:NAME, complaints:NAME) is checked by keys.parse_ranking.
_BY_HELP = (
    "negative_share | positive_share | review_count | rating_mean | recent_negative_share | aspect:NAME | "
    "complaints:NAME | recent_complaints:NAME "
    "(NAME one of quality, price, shipping, packaging, durability, appearance, functionality, "
    "ease_of_use, customer_service, value_for_money)"
)


def _add_redis(parser: argparse.ArgumentParser) -> None:
    add_redis_args(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "aggregates",
        help="read per-product aggregates from Redis, or serve them over HTTP",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="aggregates_command", metavar="ACTION", required=True)

    show = sub.add_parser("show", help="one product's aggregates")
    show.add_argument("product_id", metavar="PRODUCT")
    _add_redis(show)
    show.set_defaults(func=_show)

    top = sub.add_parser("top", help="the top products of a ranking")
    top.add_argument("--by", required=True, help=_BY_HELP)
    top.add_argument("-n", type=int, default=10, help="how many (default 10)")
    top.add_argument(
        "--min-reviews",
        type=int,
        default=3,
        help="only products with at least this many reviews, so one review does not top a list (default 3)",
    )
    _add_redis(top)
    top.set_defaults(func=_top)

    products = sub.add_parser("products", help="products by review count, most reviewed first")
    products.add_argument("--offset", type=int, default=0)
    products.add_argument("--limit", type=int, default=20)
    _add_redis(products)
    products.set_defaults(func=_products)

    serve = sub.add_parser("serve", help="HTTP read API (OpenAPI at /docs) and the live page at /")
    api = ApiSettings()
    serve.add_argument("--host", default=api.host, help="env REVIEWS_API_HOST (default 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=api.port, help="env REVIEWS_API_PORT (default 8080)")
    serve.add_argument("--redis-url", default=None, help="Redis URL (env REDIS_URL)")
    serve.set_defaults(func=_serve)

    register_analytics(sub)
    register_repair(sub)

    promote = sub.add_parser(
        "promote", help="switch every reader (API, page, CLI) to another key prefix, atomically",
        description="Set the pointer key (REDIS_ACTIVE_PREFIX_KEY) to PREFIX: every reader reads it from its next "
        "request on. Refused for a prefix with no aggregates unless --force. Roll back by promoting the old one.")
    promote.add_argument("prefix", metavar="PREFIX")
    promote.add_argument("--force", action="store_true", help="promote even a prefix with no aggregates yet")
    _add_redis(promote)
    promote.set_defaults(func=_promote)

    prefixes = sub.add_parser("prefixes", help="the key prefixes: which one readers read, models, sizes")
    _add_redis(prefixes)
    prefixes.set_defaults(func=_prefixes)

    drop = sub.add_parser(
        "drop", help="delete an old key prefix (never the one readers read)",
        description="Delete every key under PREFIX (in batches, UNLINK), except its dead-letter re-drive ledger. "
        "Refused for the prefix readers read. Retire the workers writing it first.")
    drop.add_argument("prefix", metavar="PREFIX")
    drop.add_argument("--yes", action="store_true", help="required: dropping cannot be undone")
    _add_redis(drop)
    drop.set_defaults(func=_drop)


def _prefixes_of(args: argparse.Namespace) -> Prefixes:
    from pydantic import SecretStr

    from reviews_mtl.aggregates.prefixes import Prefixes
    from reviews_mtl.aggregates.store import connect
    from reviews_mtl.settings import RedisSettings

    settings = RedisSettings(url=SecretStr(args.redis_url)) if args.redis_url else RedisSettings()
    return Prefixes.from_settings(connect(settings), settings)


def _store(args: argparse.Namespace) -> AggregateStore:
    """The store at the prefix readers read now (the pointer's, else REDIS_KEY_PREFIX)."""
    from reviews_mtl.aggregates.store import AggregateStore

    prefixes = _prefixes_of(args)
    return AggregateStore(prefixes.client, prefixes.active())


def _unavailable(exc: Exception) -> int:
    # The message of a connection error names host and port, never the password of the URL.
    print(f"reviews-mtl aggregates: Redis unavailable: {exc}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _bar(part: int, whole: int, width: int = 20) -> str:
    filled = round(width * part / whole) if whole else 0
    return "#" * filled + "." * (width - filled)


def render_product(agg: ProductAggregate) -> str:
    lines = [f"product {escape_for_terminal(agg.product_id)}: {agg.review_count} reviews"]
    for label in ("negative", "neutral", "positive"):
        count = agg.sentiment.get(label, 0)
        share = count / agg.review_count if agg.review_count else 0.0
        lines.append(f"  {label:<9} {count:>7}  {share:6.1%}  {_bar(count, agg.review_count)}")
    mean = f"{agg.rating_mean:.2f}" if agg.rating_mean is not None else "-"
    lines.append(f"  mean predicted rating {mean}")
    mentioned = agg.top_aspects(len(agg.aspects))
    if mentioned:
        lines.append("  aspects (mentions; negative/neutral/positive):")
        for name, count in mentioned:
            by = agg.aspect_sentiment.get(name, {})
            split = "/".join(str(by.get(label, 0)) for label in ("negative", "neutral", "positive"))
            lines.append(f"    {name:<17} {count:>6}  {split}")
    else:
        lines.append("  no aspects mentioned")
    return "\n".join(lines)


def _show(args: argparse.Namespace) -> int:
    import redis

    try:
        agg = _store(args).product(args.product_id)
    except redis.RedisError as exc:
        return _unavailable(exc)
    if agg is None:
        print(f"reviews-mtl aggregates: no aggregates for product {escape_for_terminal(args.product_id)!r}",
              file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        print(json.dumps(agg.model_dump(mode="json"), indent=2))
    else:
        print(render_product(agg))
    return EXIT_OK


def _top(args: argparse.Namespace) -> int:
    import redis

    from reviews_mtl.aggregates.keys import parse_ranking

    try:
        by = parse_ranking(args.by)
    except ValueError as exc:
        print(f"reviews-mtl aggregates top: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.n < 1 or args.min_reviews < 0:
        print("reviews-mtl aggregates top: -n must be >= 1 and --min-reviews >= 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        ranked = _store(args).top(by, n=args.n, min_reviews=args.min_reviews)
    except redis.RedisError as exc:
        return _unavailable(exc)
    if args.json:
        # Each object names the ranking's value by the ranking itself, and as "value" for generic readers.
        rows = [
            {"product_id": r.product_id, by: r.value, "value": r.value, "review_count": r.review_count} for r in ranked
        ]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not ranked:
        print(f"no products with at least {args.min_reviews} reviews ranked by {by}")
        return EXIT_OK
    names = [escape_for_terminal(r.product_id) for r in ranked]
    width = max(len("product"), *(len(name) for name in names))
    print(f"{'#':>3}  {'product':<{width}}  {by:>16}  {'reviews':>7}")
    for i, r in enumerate(ranked, start=1):
        value = f"{r.value:.3f}" if not float(r.value).is_integer() else f"{int(r.value)}"
        print(f"{i:>3}  {names[i - 1]:<{width}}  {value:>16}  {r.review_count:>7}")
    return EXIT_OK


def _products(args: argparse.Namespace) -> int:
    import redis

    if args.offset < 0 or not 1 <= args.limit <= 1000:
        print("reviews-mtl aggregates products: --offset >= 0 and 1 <= --limit <= 1000", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = _store(args)
        page = store.products(offset=args.offset, limit=args.limit)
        total = store.product_count()
    except redis.RedisError as exc:
        return _unavailable(exc)
    if args.json:
        print(json.dumps({"total": total, "items": [p.model_dump(mode="json") for p in page]}, indent=2))
        return EXIT_OK
    print(f"{total} products; showing {len(page)} from {args.offset}")
    for p in page:
        mean = f"{p.rating_mean:.2f}" if p.rating_mean is not None else "-"
        neg = p.sentiment.get("negative", 0) / p.review_count if p.review_count else 0.0
        aspects = ", ".join(f"{a} {c}" for a, c in p.top_aspects(3))
        name = escape_for_terminal(p.product_id)
        print(f"  {name}  reviews {p.review_count}  negative {neg:.0%}  rating {mean}  {aspects}")
    return EXIT_OK


def _promote(args: argparse.Namespace) -> int:
    import redis

    from reviews_mtl.aggregates.prefixes import PrefixError

    prefixes = _prefixes_of(args)
    try:
        previous = prefixes.promote(args.prefix, force=args.force)
    except PrefixError as exc:
        print(f"reviews-mtl aggregates promote: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except redis.RedisError as exc:
        return _unavailable(exc)
    if args.json:
        print(json.dumps({"active": args.prefix, "previous": previous}))
    else:
        print(f"readers now read prefix {args.prefix} (was {previous}); roll back with "
              f"`reviews-mtl aggregates promote {previous}`")
    return EXIT_OK


def render_prefixes(infos: list[PrefixInfo]) -> str:
    lines = []
    for info in infos:
        mark = "*" if info.active else " "
        models = ", ".join(f"{m.name} {m.version} ({m.runtime})" for m in info.models) or "-"
        lines.append(f"{mark} {escape_for_terminal(info.prefix)}  products {info.products}  reviews {info.reviews}  "
                     f"dead letters {info.dead_letters}  partitions {info.partitions}  "
                     f"models {escape_for_terminal(models)}")
    lines.append("(* = the prefix readers read)")
    return "\n".join(lines)


def _prefixes(args: argparse.Namespace) -> int:
    import redis

    try:
        infos = _prefixes_of(args).list()
    except redis.RedisError as exc:
        return _unavailable(exc)
    if args.json:
        print(json.dumps([info.to_json() for info in infos], indent=2))
    else:
        print(render_prefixes(infos))
    return EXIT_OK


def _drop(args: argparse.Namespace) -> int:
    import redis

    from reviews_mtl.aggregates.prefixes import PrefixError

    if not args.yes:
        print("reviews-mtl aggregates drop: deleting a prefix cannot be undone: add --yes", file=sys.stderr)
        return EXIT_USAGE
    prefixes = _prefixes_of(args)
    try:
        if not prefixes.exists(args.prefix):
            print(f"reviews-mtl aggregates drop: no prefix {escape_for_terminal(args.prefix)!r}", file=sys.stderr)
            return EXIT_NOT_FOUND
        deleted = prefixes.drop(args.prefix)
    except PrefixError as exc:
        print(f"reviews-mtl aggregates drop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except redis.RedisError as exc:
        return _unavailable(exc)
    if args.json:
        print(json.dumps({"dropped": args.prefix, "keys": deleted}))
    else:
        print(f"dropped prefix {args.prefix}: {deleted} keys deleted")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from reviews_mtl.aggregates.api import create_app
    from reviews_mtl.aggregates.store import AggregateStore

    prefixes = _prefixes_of(args)
    store = AggregateStore(prefixes.client, prefixes.default_prefix)
    if not store.ping():
        # Serve anyway: /healthz says 503 until Redis answers, which is what an orchestrator expects.
        print("reviews-mtl aggregates serve: Redis does not answer yet; /healthz reports 503", file=sys.stderr)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(create_app(store, prefixes), host=args.host, port=args.port, log_level="info")
    return EXIT_OK
