"""The WeChat Official Account adapter: callback crypto, safe XML, Incoming/Reply mapping, the API client."""
