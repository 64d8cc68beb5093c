/* example.c -- the smallest libcairn program: put a key, read it back.
 *
 *   cc example.c $(pkg-config --cflags --libs cairn) -o example
 *   ./example 127.0.0.1:7070
 */
#include <cairn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    cairn_options_t o;
    cairn_options_init(&o);
    if (argc > 1) o.contact_points = argv[1];

    cairn_client_t *c;
    cairn_status_t st = cairn_connect(&o, &c);
    if (st != CAIRN_OK) {
        fprintf(stderr, "connect: %s: %s\n", cairn_status_name(st), cairn_connect_error());
        return 2;
    }
    st = cairn_put(c, "greeting", 8, "hello", 5, NULL);
    if (st == CAIRN_OK) {
        cairn_value_t v;
        st = cairn_get(c, "greeting", 8, NULL, &v);
        if (st == CAIRN_OK) printf("greeting = %.*s\n", (int)v.len, (const char *)v.data);
        cairn_value_free(&v);
    }
    if (st != CAIRN_OK)
        fprintf(stderr, "%s: %s\n", cairn_status_name(st), cairn_last_error(c));
    cairn_close(c);
    return st == CAIRN_OK ? 0 : 1;
}
