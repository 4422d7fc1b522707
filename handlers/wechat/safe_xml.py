"""Callback bodies are checked here before any other XML parser sees them: size, DTDs, entities.

wechatpy hands bodies to xmltodict/expat, which expands internal entities (billion laughs); defusedxml
refuses a DTD outright, so only plain, flat WeChat XML reaches wechatpy.
https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html
"""

from __future__ import annotations

from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_BODY = 64 * 1024


class BadXml(ValueError):
    """The body is too large, not XML, or uses DTDs/entities; nothing in it is processed."""


def parse_flat(body: bytes | str) -> dict[str, str]:
    """`<xml><Key>value</Key>…</xml>` → {"Key": "value"}; nested elements are kept as their text only."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_BODY:
        raise BadXml("body too large")
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError) as exc:
        raise BadXml(type(exc).__name__) from None
    if root.tag != "xml":
        raise BadXml("root element is not <xml>")
    return {child.tag: (child.text or "").strip() for child in root}
