"""--browser: the fields a browser sends with each request (issue 21), for
h2load's -H. Fixed text, the same for every server and every run: Chrome 120
on Linux asking for a page, with a 1 KiB cookie."""


def _cookie():
    # Deterministic filler of cookie-octets (RFC 6265), as a site's session,
    # analytics and preference cookies add up to.
    parts = ['session=' + 'a1b2c3d4e5f6' * 8, '_ga=GA1.1.1234567890.1700000000',
             '_gid=GA1.1.987654321.1700000000', 'prefs=' + 'theme%3Ddark%26lang%3Den' * 4,
             'csrftoken=' + 'Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe' * 3]
    text = '; '.join(parts)
    i = 0
    while len(text) < 1024:
        text += f'; c{i}=' + 'v' * 40
        i += 1
    return text[:1024].rstrip('; =')


COOKIE = _cookie()

FIELDS = [
    ('user-agent', 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) '
                   'Chrome/120.0.0.0 Safari/537.36'),
    ('accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,'
               'image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7'),
    ('accept-language', 'en-GB,en-US;q=0.9,en;q=0.8'),
    ('accept-encoding', 'gzip, deflate, br'),
    ('sec-ch-ua', '"Not_A Brand";v="8", "Chromium";v="120", "Google Chrome";v="120"'),
    ('sec-ch-ua-mobile', '?0'),
    ('sec-ch-ua-platform', '"Linux"'),
    ('sec-fetch-dest', 'document'),
    ('sec-fetch-mode', 'navigate'),
    ('sec-fetch-site', 'same-origin'),
    ('sec-fetch-user', '?1'),
    ('upgrade-insecure-requests', '1'),
    ('cache-control', 'max-age=0'),
    ('referer', 'https://www.example.com/app/dashboard?tab=overview'),
    ('cookie', COOKIE),
]

# h2load -c 200 -n 20000 -m 10: each connection makes 100 requests, so its
# HPACK table is built afresh every 100 requests, as a browser's would be over
# a page and its assets.
CONNS = 200


def h2load_args():
    """-H NAME: VALUE for each field."""
    out = []
    for name, value in FIELDS:
        out += ['-H', f'{name}: {value}']
    return out


def describe():
    return (f'{len(FIELDS)} fields besides the pseudo-headers ('
            + ', '.join(n for n, _ in FIELDS) + f'; the cookie {len(COOKIE)} octets)')
